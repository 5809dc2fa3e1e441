"""reviews: product reviews, served from a container (stdlib only, like the other shop services).

GET /healthz -> {"status": "ok"}; GET / -> every review; GET /<sku> -> one product's reviews.
Listens on $PORT (8080 inside the container; shoal publishes it on 127.0.0.1); SIGTERM (what
`docker stop` sends, through the container's init) finishes the requests in flight, exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REVIEWS = {
    "tea": [{"stars": 5, "text": "Smoky and smooth."}],
    "mug": [{"stars": 4, "text": "Holds tea. Does not leak."}],
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.rstrip("/").rsplit("/", 1)[-1] if self.path not in ("/", "") else ""
        if self.path == "/healthz":
            self._send(200, {"status": "ok"})
        elif path == "":
            self._send(200, REVIEWS)
        elif path in REVIEWS:
            self._send(200, {"sku": path, "reviews": REVIEWS[path]})
        else:
            self._send(404, {"error": f"no reviews for {path!r}"})

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


def main() -> None:
    # every interface *inside* the container; shoal publishes the port on 127.0.0.1 only
    address = ("0.0.0.0", int(os.environ.get("PORT", "8080")))  # noqa: S104
    server = ThreadingHTTPServer(address, Handler)
    server.daemon_threads = False  # requests in flight finish before the exit
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"reviews listening on port {address[1]}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
