"""orders: takes the shop's orders, an HTTP service run by shoal behind the gateway.

An order reserves its items from the catalog service (``$CATALOG_URL/reserve``, through the
gateway so any ready catalog replica answers), is stored in SQLite at ``$ORDERS_DB`` (relative to
the working directory), and is announced on the ``orders.created`` topic so the ``notify``
function can send a confirmation.

    GET  /healthz      {"status": "ok"}
    POST /orders       {"items": [{"id": "tea-mug", "qty": 2}], "customer": "ada@example.com"}
                       -> 201 with the order; the catalog's 400/404/409 are passed on;
                          502 when the catalog cannot be reached
    GET  /orders       the latest orders, newest first
    GET  /orders/{id}  one order, or 404

Events are published with ``POST $SHOAL_API_URL/v1/topics/orders.created/events`` and
``Authorization: Bearer $SHOAL_TOKEN`` (under shoal, read from the ``api-url`` and ``token``
files in ``$SHOAL_STATE`` unless set); shoal answers 202 once the event is durable. A failed
publish is logged and never fails the order. It listens on ``$HOST`` (default 127.0.0.1) and
``$PORT`` (default 8080), logs one line per request to stdout, and on SIGTERM finishes the
requests in flight and exits 0.
"""

import http.client
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import urllib.request
from contextlib import closing
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlsplit

CATALOG_TIMEOUT = 2.0  # seconds
PUBLISH_TIMEOUT = 2.0  # seconds
MAX_BODY = 64 * 1024  # bytes
LIST_LIMIT = 100  # orders returned by GET /orders

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  TEXT NOT NULL,
    customer    TEXT,
    total_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS order_items (
    order_id    INTEGER NOT NULL REFERENCES orders(id),
    product_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    qty         INTEGER NOT NULL,
    price_cents INTEGER NOT NULL
);
"""

log = logging.getLogger("orders")


class UpstreamError(Exception):
    """The catalog answered with an error worth passing on, or could not be reached (502)."""

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("error"))
        self.status = status
        self.payload = payload


# ---------------------------------------------------------------- storage


class OrderStore:
    """Orders in one SQLite file; a connection per call keeps request threads apart."""

    def __init__(self, path: str) -> None:
        self.path = path
        with closing(self._connect()) as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5.0)
        db.row_factory = sqlite3.Row
        return db

    def add(self, customer: str | None, reservation: dict[str, Any]) -> dict[str, Any]:
        created_at = datetime.now(UTC).isoformat(timespec="seconds")
        with closing(self._connect()) as db, db:  # the inner `db` commits or rolls back
            cursor = db.execute(
                "INSERT INTO orders (created_at, customer, total_cents) VALUES (?, ?, ?)",
                (created_at, customer, reservation["total_cents"]),
            )
            order_id = cursor.lastrowid
            db.executemany(
                "INSERT INTO order_items VALUES (?, ?, ?, ?, ?)",
                [
                    (order_id, item["id"], item["name"], item["qty"], item["price_cents"])
                    for item in reservation["items"]
                ],
            )
        return self.get(order_id) or {}

    def get(self, order_id: int | None) -> dict[str, Any] | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
            return self._with_items(db, row) if row else None

    def latest(self, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT * FROM orders ORDER BY id DESC LIMIT ?", (limit,))
            return [self._with_items(db, row) for row in rows.fetchall()]

    @staticmethod
    def _with_items(db: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
        items = db.execute(
            "SELECT product_id AS id, name, qty, price_cents FROM order_items"
            " WHERE order_id = ? ORDER BY rowid",
            (row["id"],),
        )
        return {**dict(row), "items": [dict(item) for item in items]}


# ---------------------------------------------------------------- other services


def post_json(url: str, payload: Any, headers: dict[str, str], timeout: float) -> tuple[int, Any]:
    """POST JSON and return (status, decoded body); HTTP error statuses are returned too."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, body = response.status, response.read()
    except HTTPError as exc:
        with exc:
            status, body = exc.code, exc.read()
    try:
        return status, json.loads(body) if body else None
    except json.JSONDecodeError:
        return status, body.decode(errors="replace")


def reserve(catalog_url: str, items: list[Any]) -> dict[str, Any]:
    """Ask the catalog to reserve ``items``; its reservation, or an UpstreamError."""
    url = f"{catalog_url.rstrip('/')}/reserve"
    try:
        status, body = post_json(url, {"items": items}, {}, CATALOG_TIMEOUT)
    except (OSError, http.client.HTTPException) as exc:
        log.warning("catalog unreachable at %s: %s", url, exc)
        raise UpstreamError(502, {"error": "catalog unavailable", "detail": str(exc)}) from exc
    if status == 200 and isinstance(body, dict):
        return body
    if status in (400, 404, 409) and isinstance(body, dict):
        raise UpstreamError(status, body)
    raise UpstreamError(502, {"error": "catalog failed", "detail": f"HTTP {status}"})


def shoal_api() -> tuple[str | None, str | None]:
    """shoal's control API: ``$SHOAL_API_URL`` and ``$SHOAL_TOKEN``, else the ``api-url`` and
    ``token`` files in ``$SHOAL_STATE`` (which shoal sets for the services it runs)."""
    url, token = os.environ.get("SHOAL_API_URL"), os.environ.get("SHOAL_TOKEN")
    state = os.environ.get("SHOAL_STATE")
    if not (url and token) and state:
        try:
            with open(os.path.join(state, "api-url"), encoding="utf-8") as f:
                url = f.read().strip()
            with open(os.path.join(state, "token"), encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            log.warning("cannot read shoal's API from %s: %s", state, exc)
    return url, token


class EventPublisher:
    """Publishes to shoal's topics API when shoal passed its URL and token, else does nothing."""

    def __init__(self, api_url: str | None, token: str | None) -> None:
        self.api_url = api_url.rstrip("/") if api_url else None
        self.token = token
        if not (self.api_url and self.token):
            log.info("event publishing disabled: SHOAL_API_URL and SHOAL_TOKEN are not both set")

    def publish(self, topic: str, event: dict[str, Any]) -> None:
        if not (self.api_url and self.token):
            return
        url = f"{self.api_url}/v1/topics/{topic}/events"
        auth = {"Authorization": f"Bearer {self.token}"}
        try:
            status, body = post_json(url, event, auth, PUBLISH_TIMEOUT)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            log.warning("could not publish to %s: %s", topic, exc)
            return
        if status != 202:
            log.warning("publishing to %s answered HTTP %d: %s", topic, status, body)


# ---------------------------------------------------------------- HTTP


class OrdersServer(ThreadingHTTPServer):
    """One thread per request; closing the server waits for the requests in flight."""

    daemon_threads = False

    def __init__(
        self,
        address: tuple[str, int],
        store: OrderStore,
        catalog_url: str,
        publisher: EventPublisher,
    ) -> None:
        super().__init__(address, OrdersHandler)
        self.store = store
        self.catalog_url = catalog_url
        self.publisher = publisher


class OrdersHandler(BaseHTTPRequestHandler):
    server: OrdersServer
    server_version = "orders/1.0"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self.send_json(HTTPStatus.OK, {"status": "ok"})
        elif path in ("/orders", "/orders/"):
            self.send_json(HTTPStatus.OK, {"orders": self.server.store.latest()})
        elif path.startswith("/orders/"):
            order_id = path.removeprefix("/orders/")
            order = self.server.store.get(int(order_id)) if order_id.isdigit() else None
            if order is None:
                self.send_json(HTTPStatus.NOT_FOUND, {"error": "unknown order"})
            else:
                self.send_json(HTTPStatus.OK, order)
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no route for {path}"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path not in ("/orders", "/orders/"):
            self.send_json(HTTPStatus.NOT_FOUND, {"error": "no such route"})
            return
        try:
            payload = self.read_json()
        except ValueError as exc:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        items, customer = payload.get("items"), payload.get("customer")
        if not isinstance(items, list) or not items:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": "items must be a non-empty list"})
            return
        if customer is not None and not isinstance(customer, str):
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": "customer must be a string"})
            return
        try:
            reservation = reserve(self.server.catalog_url, items)
        except UpstreamError as exc:
            self.send_json(exc.status, exc.payload)
            return
        order = self.server.store.add(customer, reservation)
        log.info("order %d stored: %d cents", order["id"], order["total_cents"])
        self.server.publisher.publish("orders.created", order)
        self.send_json(HTTPStatus.CREATED, order, location=f"/orders/{order['id']}")

    def read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError(f"body larger than {MAX_BODY} bytes")
        try:
            payload = json.loads(self.rfile.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"body is not valid JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise ValueError("body must be a JSON object")
        return payload

    def send_json(self, status: int, payload: Any, location: str | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if location:
            self.send_header("Location", location)
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
    catalog_url = os.environ.get("CATALOG_URL", "http://127.0.0.1:8000/catalog")
    if not catalog_url.startswith(("http://", "https://")):
        log.error("CATALOG_URL must be an http(s) URL, got %r", catalog_url)
        return 2
    store = OrderStore(os.environ.get("ORDERS_DB", "orders.db"))
    publisher = EventPublisher(*shoal_api())
    port = int(os.environ.get("PORT", "8080"))
    host = os.environ.get("HOST", "127.0.0.1")  # exports set HOST=0.0.0.0 in containers
    server = OrdersServer((host, port), store, catalog_url, publisher)

    def stop() -> None:
        log.info("stopping: finishing requests in flight")
        server.shutdown()

    # shutdown() waits for serve_forever() to return, so it runs in its own thread.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: threading.Thread(target=stop).start())
    log.info("serving on http://127.0.0.1:%d (db %s, catalog %s)", port, store.path, catalog_url)
    server.serve_forever(poll_interval=0.1)  # a shutdown is noticed within 0.1 s
    server.server_close()  # joins the request threads still running
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
