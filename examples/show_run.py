"""Print a run as the platform recorded it, briefly: perfx-platform show RUN | python show_run.py"""

import json
import sys

run = json.load(sys.stdin)
summary = run.get("summary") or {}
total = summary.get("total") or {}
print(f"run {run['id']}: {run['status']}" + (f" ({run['reason']})" if run.get("reason") else ""))
print(f"  arguments: {json.dumps(run['arguments'])}")
print(f"  host:      {run['host']}")
print(
    f"  requests:  {total.get('requests')}, failures: {total.get('failures')}, "
    f"rps: {total.get('rps')}, p95: {total.get('p95_ms')} ms, peak users: "
    f"{summary.get('users_peak')}"
)
if summary.get("export"):
    print(
        f"  InfluxDB:  {summary['export']['points_written']} points written, "
        f"{summary['export']['points_dropped']} dropped"
    )
