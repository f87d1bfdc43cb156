"""Loads the locust-perfx plugin into Locust; it is not run on its own. Use:

    locust -f perfx_plugin.py,locustfile.py --run-id RUN_ID
    perfx -f locustfile.py --run-id RUN_ID     (the same, without this file)
"""

if __name__ == "__main__":
    raise SystemExit(__doc__)

import locust_perfx.plugin  # noqa: E402,F401
