"""The service ``bench/recovery.py`` crashes: a stdlib HTTP server on ``127.0.0.1:$PORT``.

``GET /healthz`` answers 200, ``GET /whoami`` answers ``{"pid": ...}`` (which process served it),
anything else 404. SIGTERM exits at once. It is as small as a Python web service gets without
dependencies, so its start-up is the floor the benchmark compares a supervisor against.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, {"ok": True})
        elif self.path == "/whoami":
            self._send(200, {"pid": os.getpid()})
        else:
            self._send(404, {"error": "not found"})

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the benchmark polls every few ms: a line per request would only cost time


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
