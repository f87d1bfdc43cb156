"""A line-echo TCP server, the target of ``examples/tcp_echo.py``: each line sent comes back.

Run: python examples/echo_server.py --port 9000   (--port 0: any free port, printed at start)
"""

from __future__ import annotations

import argparse
import socketserver


class EchoLines(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


class ThreadingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9000)
    port = parser.parse_args().port
    with ThreadingServer(("127.0.0.1", port), EchoLines) as server:
        print(f"echo server listening on tcp://127.0.0.1:{server.server_address[1]}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
