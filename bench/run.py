"""Run every benchmark part, each in its own process, and print one table of ratios.

    bash bench/run            # installs nginx/influxdb/the peer venv if missing, then this
    python -m bench.run --quick

Not part of the test suite: it asserts nothing and prints what it measured, with the goal
beside each number and whether it was met. Everything binds to 127.0.0.1 and is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from bench.common import BENCH, log, median, versions

RESULTS = BENCH / "results.txt"
"""The last full run's output, which docs/benchmarks.rst shows."""


class Row(NamedTuple):
    """One measurement; ``brief`` names it in the short table (rows with a goal only)."""

    measure: str
    result: str
    goal: str = ""
    met: str = ""
    brief: str = ""

    @property
    def headline(self) -> str:
        """The result without its details: what comes before the first " (", ";" or " = "."""
        return re.split(r" \(|;| = ", self.result, maxsplit=1)[0]


def part(module: str, *args: str) -> dict[str, Any]:
    log(f"running {module} {' '.join(args)}")
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=BENCH.parent,
        stdout=subprocess.PIPE,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def paired(runs: list[dict[str, Any]], mode: str, config: str, key: str) -> list[float]:
    """Per round: ``config``'s value over plain's, from the same round (adjacent runs)."""
    ratios = []
    for run in runs:
        if run["mode"] == mode and run["config"] == config and run["round"] >= 0:
            [plain] = [
                r
                for r in runs
                if r["mode"] == mode and r["round"] == run["round"] and r["config"] == "plain"
            ]
            ratios.append(run[key] / plain[key])
    return ratios


def load_rows(load: dict[str, Any]) -> list[Row]:
    runs = load["runs"]
    rows = []
    for mode in ("local", "distributed"):
        label = "local" if mode == "local" else "master + 2 workers"
        brief = "local" if mode == "local" else "distributed"
        plain = [r for r in runs if r["mode"] == mode and r["config"] == "plain"]
        if not plain:
            continue
        same = paired(runs, mode, "plain again", "rps")
        same_cpu = paired(runs, mode, "plain again", "cpu_us_per_request")
        # Below the goal but inside the spread of two identical runs: the method cannot tell.
        noise_rps = 1 - min(same, default=1.0)
        noise_cpu = max(same_cpu, default=1.0) - 1
        if same:
            rows.append(
                Row(
                    f"1. A/A: plain again / plain, req/s ({label}): this method's noise",
                    f"{median(same):.3f} (rounds {', '.join(f'{r:.3f}' for r in same)})",
                    "",
                    "",
                )
            )
        ours_rps = paired(runs, mode, "perfx", "rps")
        ours_cpu = paired(runs, mode, "perfx", "cpu_us_per_request")
        rps_ratio = median(ours_rps)
        rows.append(
            Row(
                f"1. plugin on / plain, req/s ({label})",
                f"{rps_ratio:.3f} (rounds {', '.join(f'{r:.3f}' for r in ours_rps)}); "
                f"plain {median([r['rps'] for r in plain]):,.0f} req/s",
                ">= 0.99",
                _verdict(rps_ratio >= 0.99, 1 - rps_ratio <= noise_rps),
                f"req/s, plugin / plain ({brief})",
            )
        )
        rows.append(
            Row(
                f"1. plugin on / plain, CPU per request ({label})",
                f"{median(ours_cpu):.3f}; plain "
                f"{median([r['cpu_us_per_request'] for r in plain]):.0f} us/request",
                "<= 1.01",
                _verdict(median(ours_cpu) <= 1.01, median(ours_cpu) - 1 <= noise_cpu),
                f"CPU/request, plugin / plain ({brief})",
            )
        )
        timed = [
            r for r in runs if r["mode"] == mode and r["config"] == "perfx" and r["round"] >= 0
        ]
        if "locust_rss_mib" in plain[0]:
            plain_rss = median([r["locust_rss_mib"] for r in plain])
            ours_rss = median([r["locust_rss_mib"] for r in timed])
            rows.append(
                Row(
                    f"1. Locust process RSS, plugin on / plain ({label}; the export process apart)",
                    f"plugin {ours_rss:.0f} MiB, plain {plain_rss:.0f} MiB (medians; "
                    f"{ours_rss - plain_rss:+.0f} MiB: the plugin's modules, run and web UI "
                    "state; no InfluxDB client); export process "
                    f"{median([r['export_rss_mib'] for r in timed]):.0f} MiB",
                )
            )
        export_share = median(
            [
                r["export_process_cpu_s"] / (r["window_cpu_s"] - r["export_process_cpu_s"])
                for r in timed
            ]
        )
        accounted = [r for r in runs if r["mode"] == mode and r["round"] < 0]
        share = None
        if accounted and accounted[0]["process_cpu_s"]:
            run = accounted[0]
            in_process = run["plugin_cpu_s"] / run["process_cpu_s"]
            share = in_process + export_share
            rows.append(
                Row(
                    f"1. plugin's share of Locust's CPU: greenlets + export process ({label})",
                    f"{share:.3%} = {in_process:.3%} ({run['plugin_cpu_s'] * 1000:.1f} ms of "
                    f"{run['process_cpu_s']:.1f} s, in-process) + {export_share:.3%} (export "
                    "process, timed rounds); no per-request code",
                    "<= 1%",
                    _met(share <= 0.01),
                    f"plugin's CPU share ({brief})",
                )
            )
        if load["peer_problem"]:
            continue
        peer_rps = median(paired(runs, mode, "peer", "rps"))
        peer_cpu = median(paired(runs, mode, "peer", "cpu_us_per_request"))
        rows.append(
            Row(
                f"2. peer on / plain, req/s ({label})",
                f"{peer_rps:.3f} (overhead {1 - peer_rps:.1%})",
                "(seen: 0.78)",
                "",
            )
        )
        rows.append(
            Row(
                f"2. peer on / plain, CPU per request ({label})",
                f"{peer_cpu:.3f} (overhead {peer_cpu - 1:.1%})",
                "",
                "",
            )
        )
        for what, ours_overhead, peer_overhead, noise in (
            ("req/s", 1 - rps_ratio, 1 - peer_rps, noise_rps),
            ("CPU/request", median(ours_cpu) - 1, peer_cpu - 1, noise_cpu),
        ):
            if ours_overhead <= 0:
                text = f"ours {ours_overhead:+.1%} (no overhead measured), peer {peer_overhead:.1%}"
                met = peer_overhead > 0
            else:
                text = f"{peer_overhead / ours_overhead:.0f}x (ours {ours_overhead:.2%})"
                met = peer_overhead / ours_overhead >= 20
            verdict = _verdict(met, ours_overhead <= noise)
            rows.append(
                Row(
                    f"2. peer overhead / ours, {what} ({label})",
                    text,
                    ">= 20x",
                    verdict,
                    f"peer / our overhead, {what} ({brief})",
                )
            )
        if share:
            rows.append(
                Row(
                    f"2. peer CPU overhead / our in-process share ({label})",
                    f"{(peer_cpu - 1) / share:.0f}x (peer {peer_cpu - 1:.1%}, ours {share:.3%})",
                    ">= 20x",
                    _met((peer_cpu - 1) / share >= 20),
                    f"peer CPU overhead / our share ({brief})",
                )
            )
    if load["peer_problem"]:
        rows.append(Row("2. peer", f"not run: {load['peer_problem']}", ">= 20x", "NOT RUN", "peer"))
    return rows


def master_rows(result: dict[str, Any]) -> list[Row]:
    names = f"{result['names']:,} names"
    thousands = f"{result['names'] // 1000}k names"
    summary, live, direct = result["summary"], result["live"], result["direct"]
    cheap = summary["live_median_ms"] < 10
    goal_set = result["names"] == 1000  # the 10,000-name cost is shown, not judged
    rows = [
        Row(
            f"3. master export CPU per interval, {names} (median, p99)",
            f"{summary['live_median_ms']:.1f} ms, {summary['live_p99_ms']:.1f} ms "
            f"({live['intervals']} intervals, 8 workers, {result['rps']:,.0f} req/s)",
            *(
                (
                    "< 10 ms median",
                    _met(cheap),
                    f"master CPU per interval, median, p99 ({thousands})",
                )
                if goal_set
                else ()
            ),
        ),
        Row(
            f"3. longest gevent-loop block by the export, {names} (CPU)",
            f"{summary['live_longest_slice_cpu_ms']:.1f} ms "
            f"({summary['live_longest_slice_ms']:.1f} ms wall); "
            f"{live['slices_over_5ms']} of {live['slices']} slices > 5 ms wall",
            "<= 5 ms",
            _met(summary["live_longest_slice_cpu_ms"] <= 5),
            f"longest loop block ({thousands})",
        ),
        Row(
            f"3. the same without garbage collections, {names} (CPU)",
            f"{summary['live_longest_slice_cpu_without_gc_ms']:.1f} ms; "
            f"{summary['gc_in_slices']} collections ran inside the export's slices, "
            f"longest {summary['gc_in_slices_max_ms']:.1f} ms",
            "<= 5 ms",
            _met(summary["live_longest_slice_cpu_without_gc_ms"] <= 5),
            f"the same without GC ({thousands})",
        ),
        Row(
            f"3. export process CPU per interval, {names} (off the master's loop)",
            f"{live['export_process_cpu_ms_per_interval']:.1f} ms",
            "",
            "",
        ),
        Row(
            f"3. export process RSS, {names} (after the last interval)",
            f"{live['export_process_rss_mib']:.1f} MiB; "
            f"{live.get('export_process_rss_started_mib', float('nan')):.1f} MiB when started "
            "(its imports: no Locust, gevent or influxdb_client)",
            *(
                ()
                if goal_set
                else ("< 40 MiB", _met(live["export_process_rss_mib"] < 40), "export RSS (10k)")
            ),
        ),
        Row(
            f"3. CPU per interval by design, {names} (direct, no pauses, median)",
            f"master's read + pickle (now in a forked child; in the loop if fork() fails) "
            f"{summary['direct_master_median_ms']:.1f} ms; "
            f"diff in C (export process now; master's loop before) "
            f"{summary['direct_new_median_ms']:.1f} ms; {_baseline()} (sum reports) "
            f"{summary['direct_baseline_median_ms']:.1f} ms; Locust's own merge of one report "
            f"{summary['locust_merge_median_ms']:.1f} ms",
            "",
            "",
        ),
        Row(
            f"3. master / {_baseline()} design, CPU per interval, {names}",
            f"{summary['direct_master_median_ms'] / summary['direct_baseline_median_ms']:.2f}",
            "",
            "",
        ),
        Row(
            f"3. memory, {names} (kept between intervals, peak in one; tracemalloc)",
            "master {:.1f} / {:.1f} MiB; export process {:.1f} / {:.1f} MiB; {} design "
            "{:.1f} / {:.1f} MiB; master RSS +{:.1f} MiB".format(
                *direct["master_mem_mib"],
                *direct["export_mem_mib"],
                _baseline(),
                *direct["baseline_mem_mib"],
                live["rss_growth_mib"],
            ),
            "",
            "",
        ),
    ]
    return rows


def outage_rows(result: dict[str, Any]) -> list[Row]:
    within = result["peak_queued"] <= result["buffer"]
    delivered = (
        result["points_dropped"] == 0
        and result["points_queued_after"] == 0
        and result["requests_read_back"] == result["requests_master_total"]
    )
    return [
        Row(
            f"4. 10-min outage, {result['names']:,} names: peak buffer",
            f"{result['peak_queued']:,} points of {result['buffer']:,} "
            f"({result['buffer_mib']:.1f} MiB, {result['bytes_per_point']:.0f} B/point; "
            f"RSS +{result['rss_growth_mib']:.1f} MiB)",
            "<= buffer",
            _met(within),
            "10-min outage: peak buffer",
        ),
        Row(
            "4. delivered after recovery (read back from VictoriaMetrics)",
            f"{result['requests_read_back']:,} of {result['requests_master_total']:,} requests "
            f"({result['request_points_read_back']:,} request points, in "
            f"{result['delivery_s']:.1f} s); dropped {result['points_dropped']}",
            "all",
            _met(delivered),
            "outage: delivered after recovery",
        ),
    ]


def scale_rows(result: dict[str, Any]) -> list[Row]:
    """Part 5: the master's loop at many names, plain and plugin side by side."""
    names = f"{result['names']:,} names"
    rounds = result["rounds"]
    plain = [r for r in rounds if r["config"] == "plain"]
    ours = [r for r in rounds if r["config"] == "perfx"]

    def each(runs: list[dict[str, Any]], key: str, unit: str = "", digits: int = 1) -> str:
        return ", ".join(f"{r[key]:,.{digits}f}{unit}" for r in runs)

    def mid(runs: list[dict[str, Any]], key: str) -> float:
        return median([r[key] for r in runs])

    # Two plain rounds differ by this much here: a difference below it cannot be resolved.
    spread = max((r["p99_late_ms"] for r in plain), default=0.0) - min(
        (r["p99_late_ms"] for r in plain), default=0.0
    )
    added = mid(ours, "p99_late_ms") - mid(plain, "p99_late_ms")
    stalls_added = mid(ours, "stalls") - max(r["stalls"] for r in plain)
    cpu = mid(ours, "plugin_cpu_ms_per_interval")
    export_rss = mid([r for r in ours if r["export_rss_mib"] is not None], "export_rss_mib")
    exact_ours = [
        r["tsdb_total"] == r["summary_total"] == r["locust_total"] == r["served"] for r in ours
    ]
    exact_plain = [r["locust_total"] == r["served"] for r in plain]
    totals = "; ".join(
        f"{r['tsdb_total']:,} = {r['summary_total']:,} = {r['served']:,}" for r in ours
    )
    plain_totals = "; ".join(f"{r['locust_total']:,} / {r['served']:,}" for r in plain)
    interval = f"{result['interval']:.0f} s"
    functions = sorted({f for r in ours for f in r["plugin_cpu_ms_per_interval_by_function"]})
    by_function = ", ".join(
        f"{f} {median([r['plugin_cpu_ms_per_interval_by_function'].get(f, 0.0) for r in ours]):.1f}"
        for f in functions
    )
    return [
        Row(
            f"5. master loop p99 lateness, {names}: plugin - plain (5 ms probe sleep)",
            f"{added:+.1f} ms (plain {each(plain, 'p99_late_ms', ' ms')}; plugin "
            f"{each(ours, 'p99_late_ms', ' ms')}; medians of every wake "
            f"{mid(plain, 'p50_late_ms'):.2f} / {mid(ours, 'p50_late_ms'):.2f} ms)",
            "<= +2 ms",
            _verdict(added <= 2, len(plain) > 1 and added <= spread),
            f"p99 loop lateness added ({result['names'] // 1000}k names)",
        ),
        Row(
            f"5. master loop stalls > 100 ms per round, {names}",
            f"{stalls_added:+.0f} over plain's most (plain {each(plain, 'stalls', digits=0)}; "
            f"plugin {each(ours, 'stalls', digits=0)}; longest: plain "
            f"{each(plain, 'longest_late_ms', ' ms', 0)}, plugin "
            f"{each(ours, 'longest_late_ms', ' ms', 0)}); the plugin's longest slice "
            f"{max(r['plugin_longest_slice_ms'] for r in ours):.1f} ms",
            "none added",
            _met(stalls_added <= 0 and max(r["plugin_longest_slice_ms"] for r in ours) < 100),
            f"stalls > 100 ms added ({result['names'] // 1000}k names)",
        ),
        Row(
            f"5. gen-2 garbage collections per round, {names}",
            f"plain {each(plain, 'gen2_collections', digits=0)} (longest "
            f"{each(plain, 'gen2_longest_ms', ' ms', 0)}); plugin "
            f"{each(ours, 'gen2_collections', digits=0)} (longest "
            f"{each(ours, 'gen2_longest_ms', ' ms', 0)})",
        ),
        Row(
            f"5. master CPU per {interval} interval by the plugin's greenlets, {names}",
            f"{cpu:.1f} ms (rounds {each(ours, 'plugin_cpu_ms_per_interval', ' ms')}; by "
            f"function, medians: {by_function}); the master process: plain "
            f"{each(plain, 'master_cpu_ms_per_interval', ' ms', 0)}, plugin "
            f"{each(ours, 'master_cpu_ms_per_interval', ' ms', 0)}; its minor page faults: "
            f"plain {each(plain, 'master_minor_faults_per_interval', digits=0)}, plugin "
            f"{each(ours, 'master_minor_faults_per_interval', digits=0)}",
            "< 10 ms",
            _met(cpu < 10),
            f"master CPU per interval ({result['names'] // 1000}k names)",
        ),
        Row(
            f"5. export process RSS, {names}",
            f"{export_rss:.0f} MiB (rounds {each(ours, 'export_rss_mib', ' MiB', 0)})",
            "< 40 MiB",
            _met(export_rss < 40),
            f"export process RSS ({result['names'] // 1000}k names)",
        ),
        Row(
            f"5. Locust master RSS, {names}",
            f"plain {each(plain, 'master_rss_mib', ' MiB', 0)}; plugin "
            f"{each(ours, 'master_rss_mib', ' MiB', 0)}",
        ),
        Row(
            f"5. exact: TSDB interval sums = run summary = nginx served, {names}",
            f"{sum(exact_ours)} of {len(ours)} plugin rounds ({totals}); plain Locust's total "
            f"= nginx's in {sum(exact_plain)} of {len(plain)} ({plain_totals}: a headless "
            "master stops listening 0.5 s after telling its workers to quit, and their last "
            "reports may come later; the plugin waits for them)",
            "all (plugin)",
            _met(all(exact_ours)),
            f"counts exact ({result['names'] // 1000}k names)",
        ),
    ]


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def _verdict(met: bool, within_noise: bool) -> str:
    """A side-by-side ratio short of its goal by less than the A/A rounds differ is noise."""
    if met:
        return "yes"
    return "noise" if within_noise else "NO"


def _baseline() -> str:
    from bench.common import BASELINE_COMMIT

    return BASELINE_COMMIT


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A reStructuredText simple table (it reads as plain text too)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([rule, line(header), rule, *map(line, rows), rule]) + "\n"


def full_table(rows: list[Row]) -> str:
    return table(("measure", "result", "goal", "met"), [row[:4] for row in rows])


def short_table(rows: list[Row]) -> str:
    """The summary printed last: the rows with a goal, by brief name and headline result."""
    picked = [(row.brief, row.headline, row.goal, row.met) for row in rows if row.brief]
    return table(("measure", "result", "goal", "met"), picked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one round, short windows")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--skip-load", action="store_true", help="parts 3, 4 and 5 only")
    parser.add_argument(
        "--parts",
        default="load,master,outage,scale",
        help="which parts, comma-separated (default all: load,master,outage,scale)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help=f"where the full output goes too (default {RESULTS.relative_to(BENCH.parent)})",
    )
    args = parser.parse_args()
    started = time.monotonic()
    load_before = os.getloadavg()[0]  # other work's: the bench has not started yet
    rows: list[Row] = []
    parts = set(args.parts.split(",")) - ({"load"} if args.skip_load else set())
    if "load" in parts:
        rounds = "1" if args.quick else str(args.rounds)
        window = "3" if args.quick else "8"
        rows += load_rows(part("bench.load", "--rounds", rounds, "--window", window))
    intervals = "4" if args.quick else "10"
    if "master" in parts:
        rows += master_rows(part("bench.master", "--names", "1000", "--intervals", intervals))
        rows += master_rows(part("bench.master", "--names", "10000", "--intervals", intervals))
    if "outage" in parts:
        rows += outage_rows(part("bench.outage"))
    if "scale" in parts:
        rows += scale_rows(part("bench.scale", *(["--quick"] if args.quick else [])))
    info = versions()
    info_cores = info.pop("cores")
    busy = load_before > 0.5 * int(info_cores)
    full = "\n".join(
        [
            f"locust-perfx benchmark, {time.strftime('%Y-%m-%d')}, {info_cores} cores",
            ", ".join(f"{key} {value}" for key, value in info.items()),
            f"python -m bench.run {' '.join(sys.argv[1:])}".rstrip(),
            f"took {time.monotonic() - started:.0f} s; load average before {load_before:.1f}, "
            f"at the end {os.getloadavg()[0]:.1f} ({info_cores} cores): "
            + (
                "RAN UNDER LOAD, shared with other work: rerun on a quiet machine"
                if busy
                else "quiet before"
            ),
            "",
            full_table(rows),
        ]
    )
    args.results.write_text(full)
    print(full)
    print(f"Short table; the full one is also in {args.results}:\n")
    print(short_table(rows))


if __name__ == "__main__":
    main()
