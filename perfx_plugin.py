# Load the locust-perfx plugin: locust -f perfx_plugin.py,locustfile.py --run-id RUN_ID
import locust_perfx.plugin  # noqa: F401
