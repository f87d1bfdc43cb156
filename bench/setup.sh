#!/bin/sh
# Install what the benchmark needs beside the project's venv: nginx, InfluxDB 1.x and
# VictoriaMetrics from Debian, and locust-influxdb-listener (the peer) in its own venv, with
# the same Locust.
set -eu
PEER_VENV=${PERFX_BENCH_PEER_VENV:-.venv-bench-peer}
if ! command -v nginx >/dev/null || ! command -v influxd >/dev/null \
        || ! command -v victoria-metrics >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx influxdb victoria-metrics >/dev/null
fi
if [ ! -x "$PEER_VENV/bin/python" ]; then
    "${BENCH_PYTHON:-python3}" -m venv "$PEER_VENV"
    LOCUST_VERSION=$("${BENCH_PYTHON:-python3}" -c 'from importlib.metadata import version; print(version("locust"))')
    "$PEER_VENV/bin/pip" install -q "locust==$LOCUST_VERSION" "locust-influxdb-listener==1.0.2"
fi
