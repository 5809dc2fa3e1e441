"""recommend: "customers also bought", served from its own microVM (stdlib only).

GET /healthz -> {"status": "ok"}; GET / -> every recommendation; GET /<sku> -> one product's.
Listens on $PORT (8080 inside the VM; shoal forwards a port on 127.0.0.1 to it); SIGTERM (what
the VM's init sends on `shoal down`) finishes the requests in flight, exits 0. It is baked into
a VM image (`shoal build recommend`) and runs with `shoal up --profile vms`.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALSO_BOUGHT = {
    "coffee-beans": ["filter-papers", "mug"],
    "filter-papers": ["coffee-beans"],
    "tea": ["mug"],
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        sku = self.path.strip("/").rsplit("/", 1)[-1]
        if self.path == "/healthz":
            self._send(200, {"status": "ok"})
        elif sku == "":
            self._send(200, ALSO_BOUGHT)
        elif sku in ALSO_BOUGHT:
            self._send(200, {"sku": sku, "also_bought": ALSO_BOUGHT[sku]})
        else:
            self._send(404, {"error": f"no recommendations for {sku!r}"})

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
    # every interface *inside* the VM (its network is slirp's, restrict=on); shoal forwards a
    # port on 127.0.0.1 of the host to it. Run as a plain process, HOST keeps it on loopback.
    address = (os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8080")))  # noqa: S104
    server = ThreadingHTTPServer(address, Handler)
    server.daemon_threads = False  # requests in flight finish before the exit
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"recommend listening on port {address[1]}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
