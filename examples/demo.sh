#!/usr/bin/env bash
# The main job, end to end on one machine: a reference platform, a target service, a run
# created on the platform, a short load test through the plugin (with live metrics to a local
# VictoriaMetrics when it is installed), and the run's final record from the platform.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/perfx ] || ! .venv/bin/python -c 'import jsonschema, referencing, yaml' 2>/dev/null; then
    echo "== installing locust-perfx and its reference platform into .venv"
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[reference]'
fi
if ! command -v victoria-metrics >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing victoria-metrics (an InfluxDB v2 write API) for the live metrics"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq victoria-metrics >/dev/null
fi

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
get() { .venv/bin/python -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }
wait_http() { for _ in $(seq 100); do get "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

platform_port=$(port); target_port=$(port)
platform="http://127.0.0.1:$platform_port"
echo "== reference platform on $platform (SQLite in $work)"
.venv/bin/perfx-platform serve --db "$work/platform.sqlite3" --port "$platform_port" >"$work/platform.log" 2>&1 &
pids+=($!)
echo "== target service on http://127.0.0.1:$target_port"
.venv/bin/python examples/target.py --port "$target_port" >"$work/target.log" 2>&1 &
pids+=($!)
wait_http "$platform/api/perf/runs"

influx=()
if command -v victoria-metrics >/dev/null; then
    vm_port=$(port)
    victoria-metrics -httpListenAddr "127.0.0.1:$vm_port" -storageDataPath "$work/vm" \
        -search.latencyOffset 0s >"$work/vm.log" 2>&1 &
    pids+=($!)
    wait_http "http://127.0.0.1:$vm_port/health"
    influx=(--influxdb-url "http://127.0.0.1:$vm_port" --influxdb-org demo --influxdb-bucket demo
            --influxdb-token demo-token --influxdb-interval 2)
    echo "== live metrics to victoria-metrics on http://127.0.0.1:$vm_port"
fi

run_id=$(.venv/bin/perfx-platform new-run --url "$platform" --schema examples/schema.json \
    --host "http://127.0.0.1:$target_port" --endpoint search --environment demo)
echo "== created run $run_id; its arguments come from examples/schema.json"
echo "== perfx -f examples/locustfile.py --run-id $run_id --model demo-model --gpu_model A100 ..."
.venv/bin/perfx -f examples/locustfile.py --run-id "$run_id" --platform-url "$platform" \
    --model demo-model --gpu_model A100 "${influx[@]}" \
    --headless -u 5 -r 5 -t 10s --only-summary --stop-timeout 5 2>&1 | grep -v "^\s*$" | tail -n 25

echo
echo "== the run as the platform recorded it"
.venv/bin/perfx-platform show "$run_id" --url "$platform" > "$work/run.json"
.venv/bin/python examples/show_run.py < "$work/run.json"
requests=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["total"]["requests"])' "$work/run.json")
if [ ${#influx[@]} -gt 0 ]; then
    echo
    echo "== read back from the TSDB: requests of /search per ${influx[-1]} s interval"
    # VictoriaMetrics makes the last write searchable a moment after acknowledging it.
    for _ in $(seq 20); do
        get "http://127.0.0.1:$vm_port/internal/force_flush" >/dev/null
        series=$(get "http://127.0.0.1:$vm_port/api/v1/export?match[]=locust_requests_requests%7Brun_id=%22$run_id%22%7D")
        total=$(echo "$series" | .venv/bin/python -c 'import json,sys; print(sum(sum(json.loads(l)["values"]) for l in sys.stdin if l.strip()))')
        [ "$total" = "$requests" ] && break
        sleep 0.25
    done
    echo "$series" | .venv/bin/python -c 'import json,sys; [print("  values:", json.loads(l)["values"], "sum:", sum(json.loads(l)["values"])) for l in sys.stdin if l.strip()]'
fi
