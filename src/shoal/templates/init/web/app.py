"""web: the starter service, a small HTTP server run by shoal behind its gateway.

    GET /         {"message": "Hello from web", "pid": ...}
    GET /healthz  {"status": "ok"}, the health check named in shoal.yaml

It uses only the standard library, listens on 127.0.0.1 and the port shoal passes in ``$PORT``
(8080 when run by hand), logs one line per request to stdout, and on SIGTERM finishes the
requests in flight and exits 0, which is how shoal stops and replaces it.
"""

import json
import os
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() waits for the requests in flight


class Handler(BaseHTTPRequestHandler):
    server_version = "web/1.0"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self.send_json(HTTPStatus.OK, {"status": "ok"})
        elif path == "/":
            greeting = os.environ.get("GREETING", "Hello")
            self.send_json(HTTPStatus.OK, {"message": f"{greeting} from web", "pid": os.getpid()})
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"nothing at {path}"})

    def send_json(self, status: HTTPStatus, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        print(f"web: {self.address_string()} {format % args}", flush=True)


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    server = Server(("127.0.0.1", port), Handler)
    # shutdown() waits for serve_forever() to return, so it runs in its own thread.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"web: listening on http://127.0.0.1:{port}", flush=True)
    server.serve_forever(poll_interval=0.1)  # a shutdown is noticed within 0.1 s
    server.server_close()
    print("web: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
