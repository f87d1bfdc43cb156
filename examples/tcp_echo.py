"""Load a TCP service with a client of your own: Locust counts what it reports.

Locust measures only the clients it ships (HTTP); any other client reports each call
through ``environment.events.request``, and from there the plugin sees it like any request
(the summary sent to the platform, the InfluxDB points). The host is the run's environment
host on the platform, here a ``tcp://`` URL::

    python examples/echo_server.py --port 9000 &
    perfx-platform new-run --schema examples/tcp_echo_schema.json --host tcp://127.0.0.1:9000
    perfx -f examples/tcp_echo.py --run-id RUN_ID --payload_bytes 256 --headless -u 4 -t 30s
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from locust import User, constant_throughput, task
from locust.event import EventHook

CONNECT_TIMEOUT = 5.0


class EchoMismatch(Exception):
    """The server answered something else than the line it was sent."""


class EchoClient:
    """One TCP connection to a line-echo server; each exchange fires one ``request`` event.

    ``response_time`` is in milliseconds and ``response_length`` in bytes, as Locust's own
    clients report them; a failed exchange carries its exception, which makes it a failure.
    """

    def __init__(self, url: str, request_event: EventHook) -> None:
        parts = urlsplit(url)
        if parts.scheme != "tcp" or not parts.hostname or not parts.port:
            raise ValueError(f"expected a host like tcp://127.0.0.1:9000, got {url!r}")
        self.address = (parts.hostname, parts.port)
        self.request_event = request_event
        self.sock = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT)
        self.lines = self.sock.makefile("rb")

    def echo(self, payload: bytes, name: str) -> None:
        line = payload + b"\n"
        started = time.perf_counter()
        reply = b""
        exception: Exception | None = None
        try:
            self.sock.sendall(line)
            reply = self.lines.readline()
            if reply != line:
                raise EchoMismatch(f"sent {len(line)} bytes, got {reply[:40]!r}")
        except (OSError, EchoMismatch) as err:
            exception = err
        self.request_event.fire(
            request_type="TCP",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=len(reply),
            exception=exception,
            context={},
        )

    def close(self) -> None:
        self.lines.close()
        self.sock.close()


class EchoUser(User):
    wait_time = constant_throughput(20)

    def on_start(self) -> None:
        self.payload = b"x" * self.environment.parsed_options.payload_bytes
        self.client = EchoClient(self.host, self.environment.events.request)

    def on_stop(self) -> None:
        self.client.close()

    @task
    def echo(self) -> None:
        self.client.echo(self.payload, "echo")
