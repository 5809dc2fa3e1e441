"""catalog: the shop's product catalogue, an HTTP service run by shoal as two replicas.

Products are read from ``products.json`` beside this file and kept in memory, so each replica
holds its own stock (a real shop would share a database; this one shows balancing instead: every
response names the replica's PID in ``X-Served-By``).

The gateway forwards paths with their ``/catalog`` prefix, so that is what this service serves:

    GET  /healthz                   {"status": "ok"}
    GET  /catalog/products[?q=mug]  products whose id or name contains q
    GET  /catalog/products/{id}     one product, or 404
    POST /catalog/reserve           {"items": [{"id": "tea-mug", "qty": 2}]}
                                    -> 200 with lines and total_cents, 409 when out of stock,
                                       404 for an unknown product, 400 for a malformed body

It listens on ``$HOST`` (default 127.0.0.1) and ``$PORT`` (default 8080), logs one line per
request to stdout, and on SIGTERM stops accepting, finishes the requests in flight and exits 0.
"""

import json
import logging
import os
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PRODUCTS_FILE = Path(__file__).with_name("products.json")
MAX_BODY = 64 * 1024  # bytes; a reservation is a short list

log = logging.getLogger("catalog")


class CatalogError(Exception):
    """A reservation that cannot be made, with the HTTP status that says why."""

    def __init__(self, status: HTTPStatus, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.payload = {"error": message, **details}


class Catalog:
    """Products and their stock. A reservation takes all its items or none of them."""

    def __init__(self, products: list[dict[str, Any]]) -> None:
        self._products = {product["id"]: dict(product) for product in products}
        self._lock = threading.Lock()

    def search(self, query: str = "") -> list[dict[str, Any]]:
        needle = query.strip().lower()
        with self._lock:
            return [
                dict(product)
                for product in self._products.values()
                if needle in product["id"] or needle in product["name"].lower()
            ]

    def get(self, product_id: str) -> dict[str, Any] | None:
        with self._lock:
            product = self._products.get(product_id)
            return dict(product) if product else None

    def reserve(self, wanted: dict[str, int]) -> dict[str, Any]:
        with self._lock:
            for product_id, qty in wanted.items():
                product = self._products.get(product_id)
                if product is None:
                    raise CatalogError(HTTPStatus.NOT_FOUND, "unknown product", id=product_id)
                if product["stock"] < qty:
                    raise CatalogError(
                        HTTPStatus.CONFLICT,
                        "out of stock",
                        id=product_id,
                        requested=qty,
                        available=product["stock"],
                    )
            lines = []
            for product_id, qty in wanted.items():
                product = self._products[product_id]
                product["stock"] -= qty
                lines.append(
                    {
                        "id": product_id,
                        "name": product["name"],
                        "qty": qty,
                        "price_cents": product["price_cents"],
                        "subtotal_cents": qty * product["price_cents"],
                    }
                )
        return {"items": lines, "total_cents": sum(line["subtotal_cents"] for line in lines)}


def parse_reservation(payload: Any) -> dict[str, int]:
    """Quantities by product id from ``{"items": [{"id": str, "qty": int >= 1}, ...]}``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
        raise ValueError('expected {"items": [{"id": ..., "qty": ...}]}')
    if not payload["items"]:
        raise ValueError("items is empty")
    wanted: dict[str, int] = {}
    for index, item in enumerate(payload["items"]):
        if not isinstance(item, dict):
            raise ValueError(f"items[{index}] is not an object")
        product_id, qty = item.get("id"), item.get("qty")
        if not isinstance(product_id, str) or not product_id:
            raise ValueError(f"items[{index}].id must be a non-empty string")
        if isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
            raise ValueError(f"items[{index}].qty must be a whole number of at least 1")
        wanted[product_id] = wanted.get(product_id, 0) + qty
    return wanted


class CatalogServer(ThreadingHTTPServer):
    """One thread per request; closing the server waits for the requests in flight."""

    daemon_threads = False

    def __init__(self, address: tuple[str, int], catalog: Catalog) -> None:
        super().__init__(address, CatalogHandler)
        self.catalog = catalog


class CatalogHandler(BaseHTTPRequestHandler):
    server: CatalogServer
    server_version = "catalog/1.0"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        catalog = self.server.catalog
        if url.path == "/healthz":
            self.send_json(HTTPStatus.OK, {"status": "ok"})
        elif url.path == "/catalog/products":
            query = parse_qs(url.query).get("q", [""])[0]
            self.send_json(HTTPStatus.OK, {"products": catalog.search(query)})
        elif url.path.startswith("/catalog/products/"):
            product = catalog.get(url.path.removeprefix("/catalog/products/"))
            if product is None:
                self.send_json(HTTPStatus.NOT_FOUND, {"error": "unknown product"})
            else:
                self.send_json(HTTPStatus.OK, product)
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no route for {url.path}"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/catalog/reserve":
            self.send_json(HTTPStatus.NOT_FOUND, {"error": "no such route"})
            return
        try:
            wanted = parse_reservation(self.read_json())
            reservation = self.server.catalog.reserve(wanted)
        except ValueError as exc:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except CatalogError as exc:
            self.send_json(exc.status, exc.payload)
        else:
            self.send_json(HTTPStatus.OK, reservation)

    def read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError(f"body larger than {MAX_BODY} bytes")
        try:
            return json.loads(self.rfile.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"body is not valid JSON: {exc}") from exc

    def send_json(self, status: HTTPStatus, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Served-By", f"catalog/{os.getpid()}")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "info").upper(),
        stream=sys.stdout,
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
    )
    catalog = Catalog(json.loads(PRODUCTS_FILE.read_text()))
    port = int(os.environ.get("PORT", "8080"))
    host = os.environ.get("HOST", "127.0.0.1")  # exports set HOST=0.0.0.0 in containers
    server = CatalogServer((host, port), catalog)

    def stop() -> None:
        log.info("stopping: finishing requests in flight")
        server.shutdown()

    # shutdown() waits for serve_forever() to return, so it runs in its own thread.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: threading.Thread(target=stop).start())
    log.info("serving %d products on http://127.0.0.1:%d", len(catalog.search()), port)
    server.serve_forever(poll_interval=0.1)  # a shutdown is noticed within 0.1 s
    server.server_close()  # joins the request threads still running
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
