"""A small target service for the demo: a fake search API with a few milliseconds of latency.

Run: python examples/target.py --port 8081
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] != "/search":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    time.sleep(random.uniform(0.002, 0.02))
    body = json.dumps({"results": [{"id": i, "score": random.random()} for i in range(5)]})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    port = parser.parse_args().port
    with make_server(
        "127.0.0.1", port, app, server_class=ThreadingServer, handler_class=QuietHandler
    ) as server:
        print(f"target listening on http://127.0.0.1:{port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
