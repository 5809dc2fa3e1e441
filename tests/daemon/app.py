"""A tiny service for the daemon tests: stdlib HTTP on $PORT, misbehaving on request.

Env: START_DELAY (s before listening), FAIL_HEALTH_AFTER (healthz 503 after N health checks),
IGNORE_TERM (1: ignore SIGTERM), MARK (echoed by /whoami, shows which revision answers).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8080"))
FAIL_AFTER = int(os.environ.get("FAIL_HEALTH_AFTER", "0"))


class Handler(BaseHTTPRequestHandler):
    checks = 0

    def do_GET(self) -> None:
        if self.path == "/healthz":
            Handler.checks += 1
            ok = FAIL_AFTER == 0 or Handler.checks <= FAIL_AFTER
            self._send(200 if ok else 503, {"ok": ok})
        elif self.path == "/whoami":
            self._send(200, {"pid": os.getpid(), "mark": os.environ.get("MARK", "")})
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
        print(f"{self.command} {self.path}", flush=True)


def main() -> None:
    if os.environ.get("IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(float(os.environ.get("START_DELAY", "0")))
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print(f"listening on {PORT} mark={os.environ.get('MARK', '')}", flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
