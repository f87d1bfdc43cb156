"""A small target service for the demo and the examples: a fake search API and a fake
LLM rerank API, each with a few milliseconds of latency.

Run: python examples/target.py --port 8081   (--port 0: any free port, printed at start)

``POST /rerank`` takes ``{"model": ..., "query": ..., "documents": [...]}`` and answers one
score per document, with the model and the GPU pool (the ``X-GPU-Model`` header, as a
gateway routing to pools of GPUs would read it) that served it; its latency grows with
the batch, as a real reranker's does.
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

RERANK_MS_PER_DOCUMENT = 0.1


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/search":
        return search(start_response)
    if (path, method) == ("/rerank", "POST"):
        return rerank(environ, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def search(start_response: Callable[..., Any]) -> Iterable[bytes]:
    time.sleep(random.uniform(0.002, 0.02))
    body = {"results": [{"id": i, "score": random.random()} for i in range(5)]}
    return respond(start_response, "200 OK", body)


def rerank(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    size = int(environ.get("CONTENT_LENGTH") or 0)
    try:
        request = json.loads(environ["wsgi.input"].read(size))
        model, documents = request["model"], request["documents"]
    except (ValueError, KeyError, TypeError):
        return respond(start_response, "400 Bad Request", {"error": "expected model, documents"})
    time.sleep(0.002 + RERANK_MS_PER_DOCUMENT / 1000 * len(documents))
    body = {
        "model": model,
        "gpu_model": environ.get("HTTP_X_GPU_MODEL", ""),
        "scores": [random.random() for _ in documents],
    }
    return respond(start_response, "200 OK", body)


def respond(start_response: Callable[..., Any], status: str, body: object) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


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
        print(f"target listening on http://127.0.0.1:{server.server_port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
