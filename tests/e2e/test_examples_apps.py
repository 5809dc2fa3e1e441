"""End-to-end tests of the example applications: ``examples/shop`` and the ``shoal init`` template.

They run the apps' own code the way shoal does, without shoal: each service is a real child
process on a free port of 127.0.0.1 (found at run time), checked through ``/healthz`` and its
endpoints, then stopped with SIGTERM, which must end it with exit code 0. Functions are imported
fresh from their files and called with the event shapes AWS sends (API Gateway HTTP API v2, SQS
batches, EventBridge scheduled events). The report job runs against a database written by a real
orders process. Every wait has a deadline; every child is killed on the way out.
"""

import base64
import contextlib
import http.client
import importlib.util
import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
TEMPLATE = ROOT / "src" / "shoal" / "templates" / "init"

START_DEADLINE = 5.0  # seconds for a service to answer /healthz
STOP_DEADLINE = 5.0  # seconds for a service to exit after SIGTERM
REQUEST_TIMEOUT = 5.0  # seconds per HTTP request

Handler = Callable[[dict[str, Any], Any], Any]


# ---------------------------------------------------------------- HTTP client


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: Any  # decoded JSON, or None when empty


def call(port: int, method: str, path: str, payload: Any = None, raw: bytes | None = None) -> Reply:
    """One request to 127.0.0.1:port; ``payload`` is sent as JSON, ``raw`` as it is."""
    body = raw if raw is not None else None if payload is None else json.dumps(payload).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, headers, json.loads(data) if data else None)
    finally:
        connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------- services as child processes


@dataclass
class App:
    """A service of an example, running as a child process in its own process group."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> Reply:
        return call(self.port, "GET", path)

    def post(self, path: str, payload: Any = None, raw: bytes | None = None) -> Reply:
        return call(self.port, "POST", path, payload, raw)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        """Send SIGTERM and return the exit code, which must come within the deadline."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running {STOP_DEADLINE}s after SIGTERM")

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            code = self.proc.poll()
            if code is not None:
                pytest.fail(
                    f"{self.name} exited with {code} before it was healthy:\n{self.output()}"
                )
            with contextlib.suppress(OSError):
                reply = self.get("/healthz")
                if reply.status == 200 and reply.body == {"status": "ok"}:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not healthy after {START_DEADLINE}s:\n{self.output()}")
            time.sleep(0.05)


@contextlib.contextmanager
def running(workdir: Path, tmp_path: Path, **env: str) -> Iterator[App]:
    """Start ``python app.py`` in ``workdir`` on a free port, as shoal would; kill it at the end."""
    port = free_port()
    log = tmp_path / f"{workdir.name}-{port}.log"
    child_env = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
    child_env.update(env, PORT=str(port), PYTHONDONTWRITEBYTECODE="1")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=workdir,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    app = App(workdir.name, proc, port, log)
    try:
        app.wait_healthy()
        yield app
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_DEADLINE)


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[App]:
    with running(SHOP / "catalog", tmp_path) as app:
        yield app


# ---------------------------------------------------------------- stand-ins for other parties


class FakeServer(ThreadingHTTPServer):
    """An HTTP server inside the test whose answers to POST come from ``respond``."""

    def __init__(self, respond: Callable[[str, dict[str, str], bytes], tuple[int, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.respond = respond


class FakeHandler(BaseHTTPRequestHandler):
    server: FakeServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, payload = self.server.respond(self.path, dict(self.headers), body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def fake_server(respond: Callable[[str, dict[str, str], bytes], tuple[int, Any]]) -> Iterator[int]:
    """Serve ``respond`` on a free port of 127.0.0.1 in a thread; yields the port."""
    server = FakeServer(respond)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=STOP_DEADLINE)


# ---------------------------------------------------------------- Lambda handlers and events


def load_handler(path: Path, name: str = "handler") -> Handler:
    """Import the file at ``path`` as a new module (so its init phase runs again)."""
    spec = importlib.util.spec_from_file_location(f"example_{uuid.uuid4().hex}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:  # no __pycache__ in the examples, nor in the template `shoal init` copies
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes_bytecode
    handler: Handler = getattr(module, name)
    return handler


@dataclass
class LambdaContext:
    """The context object AWS Lambda passes to a Python handler, reduced to its fields."""

    function_name: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 128
    log_group_name: str = "/aws/lambda/example"
    log_stream_name: str = "2026/01/01/[$LATEST]0123456789abcdef"
    timeout_s: float = 10.0
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.timeout_s - (time.monotonic() - self.started)) * 1000)


def http_event(
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    base64_body: bool = False,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event."""
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {"content-type": "application/json", "host": "127.0.0.1:8000"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "shoal",
            "domainName": "127.0.0.1",
            "domainPrefix": "127",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "pytest",
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": base64_body,
    }
    if query:
        event["queryStringParameters"] = query
    if body is not None:
        event["body"] = base64.b64encode(body).decode() if base64_body else body.decode()
    return event


def sqs_record(body: str, message_id: str | None = None) -> dict[str, Any]:
    """One record of an SQS batch event as Lambda delivers it."""
    sent = str(int(time.time() * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": base64.b64encode(os.urandom(24)).decode(),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": sent,
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": sent,
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders-created",
        "awsRegion": "us-east-1",
    }


def scheduled_event() -> dict[str, Any]:
    """An EventBridge Scheduled Event, as a ``rate(...)`` or ``cron(...)`` rule sends it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/notify-schedule"],
        "detail": {},
    }


def response_json(response: dict[str, Any]) -> Any:
    assert response["headers"]["content-type"] == "application/json"
    return json.loads(response["body"])


# ---------------------------------------------------------------- the manifests


@pytest.mark.parametrize("app_dir", [SHOP, TEMPLATE], ids=["shop", "init-template"])
def test_manifest_names_files_that_exist(app_dir: Path) -> None:
    manifest = yaml.safe_load((app_dir / "shoal.yaml").read_text())
    for name, spec in {**manifest.get("services", {}), **manifest.get("jobs", {})}.items():
        if spec.get("runtime") == "container":  # its code is in the image its folder builds
            assert (app_dir / spec["build"] / "Dockerfile").is_file(), name
            continue
        command = spec["command"]
        argv = shlex.split(command) if isinstance(command, str) else command
        assert argv[0] == "python3", name
        folder = spec["build"] if spec.get("runtime") == "vm" else spec["workdir"]  # vm: baked
        assert (app_dir / folder / argv[1]).is_file(), name
    for name, spec in manifest.get("functions", {}).items():
        file, handler = spec["handler"].split(":")
        assert callable(load_handler(app_dir / file, handler)), name


def shoal(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the shoal CLI of this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("app_dir", [SHOP, TEMPLATE], ids=["shop", "init-template"])
def test_shoal_validate_accepts_the_manifest(app_dir: Path) -> None:
    result = shoal("validate", "-q", "-f", str(app_dir / "shoal.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_shoal_init_scaffolds_the_template(tmp_path: Path) -> None:
    target = tmp_path / "my-app"
    result = shoal("init", str(target))
    assert result.returncode == 0, result.stdout + result.stderr
    for rel in ("shoal.yaml", "web/app.py", "functions/greet.py", ".env.example", ".gitignore"):
        assert (target / rel).read_bytes() == (TEMPLATE / rel).read_bytes().replace(
            b"name: hello", b"name: my-app"
        ), rel
    result = shoal("validate", "-q", cwd=target)
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifests_keep_their_contract() -> None:
    shop = yaml.safe_load((SHOP / "shoal.yaml").read_text())
    assert shop["name"] == "shop"
    assert shop["services"]["catalog"]["replicas"] == 2
    assert shop["services"]["orders"]["depends_on"] == {"catalog": "healthy"}
    assert shop["functions"]["notify"]["triggers"][0]["event"]["topic"] == "orders.created"
    assert set(shop["topics"]) == {"orders.created", "orders.failed"}
    hello = yaml.safe_load((TEMPLATE / "shoal.yaml").read_text())
    assert hello["name"] == "hello"
    assert hello["services"]["web"]["routes"] == ["/"]
    assert hello["functions"]["greet"]["triggers"] == [
        {"http": {"path": "/greet", "methods": ["GET"]}}
    ]
    assert ".shoal/" in (TEMPLATE / ".gitignore").read_text().split()


# ---------------------------------------------------------------- catalog


def test_catalog_lists_finds_and_stops_cleanly(catalog: App) -> None:
    listing = catalog.get("/catalog/products")
    assert listing.status == 200
    products = listing.body["products"]
    assert len(products) == 12
    assert all(set(product) == {"id", "name", "price_cents", "stock"} for product in products)
    assert listing.headers["x-served-by"] == f"catalog/{catalog.proc.pid}"

    tea = catalog.get("/catalog/products?q=tea").body["products"]
    assert tea
    assert all("tea" in p["id"] or "tea" in p["name"].lower() for p in tea)

    mug = catalog.get("/catalog/products/tea-mug")
    assert mug.status == 200
    assert mug.body["name"] == "Stoneware tea mug"
    missing = catalog.get("/catalog/products/no-such-thing")
    assert missing.status == 404
    assert missing.body == {"error": "unknown product"}

    assert catalog.stop() == 0
    log = catalog.output()
    for request in ('"GET /catalog/products HTTP/1.1" 200', '"GET /catalog/products?q=tea'):
        assert request in log
    assert '"GET /catalog/products/no-such-thing HTTP/1.1" 404' in log


def test_catalog_reserves_all_or_nothing(catalog: App) -> None:
    stock = catalog.get("/catalog/products/scale").body["stock"]

    reserved = catalog.post("/catalog/reserve", {"items": [{"id": "scale", "qty": 2}]})
    assert reserved.status == 200
    assert reserved.body["total_cents"] == 2 * 3200
    assert reserved.body["items"][0]["qty"] == 2
    assert catalog.get("/catalog/products/scale").body["stock"] == stock - 2

    too_many = {"items": [{"id": "tea-mug", "qty": 1}, {"id": "scale", "qty": stock}]}
    refused = catalog.post("/catalog/reserve", too_many)
    assert refused.status == 409
    assert refused.body["id"] == "scale"
    assert refused.body["available"] == stock - 2
    assert catalog.get("/catalog/products/scale").body["stock"] == stock - 2
    assert catalog.get("/catalog/products/tea-mug").body["stock"] == 25  # nothing taken

    unknown = catalog.post("/catalog/reserve", {"items": [{"id": "unicorn", "qty": 1}]})
    assert unknown.status == 404

    assert catalog.stop() == 0


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"items": []}',
        b'{"items": "tea-mug"}',
        b'{"items": [{"id": "tea-mug"}]}',
        b'{"items": [{"id": "tea-mug", "qty": 0}]}',
        b'{"items": [{"id": "tea-mug", "qty": true}]}',
        b'{"items": [{"id": 7, "qty": 1}]}',
        b'{"items": ["tea-mug"]}',
    ],
)
def test_catalog_rejects_malformed_reservations(catalog: App, body: bytes) -> None:
    reply = catalog.post("/catalog/reserve", raw=body)
    assert reply.status == 400
    assert reply.body["error"]


# ---------------------------------------------------------------- orders


def orders_env(tmp_path: Path, catalog_url: str, **extra: str) -> dict[str, str]:
    return {"CATALOG_URL": catalog_url, "ORDERS_DB": str(tmp_path / "orders.db"), **extra}


def test_orders_are_reserved_stored_and_listed(catalog: App, tmp_path: Path) -> None:
    env = orders_env(tmp_path, f"{catalog.url}/catalog")
    with running(SHOP / "orders", tmp_path, **env) as orders:
        items = [{"id": "tea-mug", "qty": 2}, {"id": "green-tea", "qty": 1}]
        created = orders.post("/orders", {"customer": "ada@example.com", "items": items})
        assert created.status == 201
        order = created.body
        assert order["total_cents"] == 2 * 1200 + 1100
        assert order["customer"] == "ada@example.com"
        assert [(i["id"], i["qty"]) for i in order["items"]] == [("tea-mug", 2), ("green-tea", 1)]
        assert created.headers["location"] == f"/orders/{order['id']}"

        assert orders.get(f"/orders/{order['id']}").body == order
        assert orders.get("/orders").body == {"orders": [order]}
        assert orders.get("/orders/999").status == 404
        assert orders.get("/orders/abc").status == 404
        assert catalog.get("/catalog/products/tea-mug").body["stock"] == 23

        out_of_stock = orders.post("/orders", {"items": [{"id": "scale", "qty": 99}]})
        assert out_of_stock.status == 409
        assert out_of_stock.body["error"] == "out of stock"
        assert orders.post("/orders", raw=b"nope").status == 400
        assert orders.post("/orders", {"items": []}).status == 400
        assert orders.post("/orders", {"items": [{"id": "x", "qty": "1"}]}).status == 400
        assert len(orders.get("/orders").body["orders"]) == 1

        assert orders.stop() == 0
        log = orders.output()
        assert log.count("event publishing disabled") == 1
        assert '"POST /orders HTTP/1.1" 201' in log
    with contextlib.closing(sqlite3.connect(tmp_path / "orders.db")) as db:
        assert db.execute("SELECT COUNT(*) FROM orders").fetchone() == (1,)
    assert catalog.stop() == 0


def test_orders_answers_502_when_catalog_is_down(tmp_path: Path) -> None:
    env = orders_env(tmp_path, f"http://127.0.0.1:{free_port()}/catalog")
    with running(SHOP / "orders", tmp_path, **env) as orders:
        reply = orders.post("/orders", {"items": [{"id": "tea-mug", "qty": 1}]})
        assert reply.status == 502
        assert reply.body["error"] == "catalog unavailable"
        assert orders.get("/orders").body == {"orders": []}
        assert orders.stop() == 0


def test_orders_publishes_orders_created_and_survives_a_failed_publish(
    catalog: App, tmp_path: Path
) -> None:
    published: list[tuple[str, str, Any]] = []

    def topics_api(path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        published.append((path, headers.get("Authorization", ""), json.loads(body)))
        return 202, {"id": len(published)}

    with fake_server(topics_api) as api_port:
        env = orders_env(
            tmp_path,
            f"{catalog.url}/catalog",
            SHOAL_API_URL=f"http://127.0.0.1:{api_port}",
            SHOAL_TOKEN="t0ken",
        )
        with running(SHOP / "orders", tmp_path, **env) as orders:
            first = orders.post("/orders", {"items": [{"id": "espresso-cup", "qty": 1}]})
            assert first.status == 201
            assert published == [
                ("/v1/topics/orders.created/events", "Bearer t0ken", first.body),
            ]
            assert "event publishing disabled" not in orders.output()
    # The API is gone now: the order is still taken, the failure only logged.
    with running(SHOP / "orders", tmp_path, **env) as orders:
        second = orders.post("/orders", {"items": [{"id": "espresso-cup", "qty": 1}]})
        assert second.status == 201
        assert second.body["id"] == first.body["id"] + 1
        assert orders.stop() == 0
        assert "could not publish to orders.created" in orders.output()
    assert len(published) == 1
    assert catalog.stop() == 0


def test_orders_finishes_the_request_in_flight_on_sigterm(tmp_path: Path) -> None:
    reached, release = threading.Event(), threading.Event()

    def slow_catalog(path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        reached.set()
        release.wait(timeout=STOP_DEADLINE)
        line = {"id": "tea-mug", "name": "Stoneware tea mug", "qty": 1, "price_cents": 1200}
        return 200, {"items": [{**line, "subtotal_cents": 1200}], "total_cents": 1200}

    replies: list[Reply] = []
    with (
        fake_server(slow_catalog) as catalog_port,
        running(
            SHOP / "orders",
            tmp_path,
            **orders_env(tmp_path, f"http://127.0.0.1:{catalog_port}/catalog"),
        ) as orders,
    ):
        order = {"items": [{"id": "tea-mug", "qty": 1}]}
        client = threading.Thread(target=lambda: replies.append(orders.post("/orders", order)))
        client.start()
        try:
            assert reached.wait(timeout=REQUEST_TIMEOUT)
            orders.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)  # shutting down, while the order still waits on the catalog
            assert orders.proc.poll() is None
        finally:
            release.set()
            client.join(timeout=REQUEST_TIMEOUT)
        assert orders.proc.wait(timeout=STOP_DEADLINE) == 0
    assert [reply.status for reply in replies] == [201]


# ---------------------------------------------------------------- reviews (a container's code)


def test_reviews_serves_and_stops_cleanly(tmp_path: Path) -> None:
    """The code the reviews image runs, run here as a process (the image needs
    `shoal images bootstrap`; tests/runtimes/container runs images)."""
    with running(SHOP / "reviews", tmp_path) as reviews:
        assert reviews.get("/tea").body["reviews"][0]["stars"] == 5
        assert set(reviews.get("/").body) == {"tea", "mug"}
        assert reviews.get("/nothing").status == 404
        assert reviews.stop() == 0
        assert '"GET /tea HTTP/1.1" 200' in reviews.output()


# ---------------------------------------------------------------- the nightly report job


def run_report(orders_db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORDERS_DB": str(orders_db), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "report.py"],
        cwd=SHOP / "jobs",
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def test_report_summarises_the_orders_database(catalog: App, tmp_path: Path) -> None:
    env = orders_env(tmp_path, f"{catalog.url}/catalog")
    with running(SHOP / "orders", tmp_path, **env) as orders:
        for items in (
            [{"id": "coffee-beans", "qty": 2}],
            [{"id": "coffee-beans", "qty": 1}, {"id": "filter-papers", "qty": 1}],
        ):
            assert orders.post("/orders", {"items": items}).status == 201
        assert orders.stop() == 0
    assert catalog.stop() == 0

    result = run_report(tmp_path / "orders.db")
    assert result.returncode == 0, result.stderr
    assert "orders:  2" in result.stdout
    assert "revenue: 48.00 EUR" in result.stdout  # 3 x 14.50 + 4.50
    assert "best sellers: Single-origin coffee beans, 250 g x3, Filter papers (100) x1" in (
        result.stdout
    )


def test_report_without_a_database_says_so(tmp_path: Path) -> None:
    result = run_report(tmp_path / "missing.db")
    assert result.returncode == 0, result.stderr
    assert "no orders yet" in result.stdout
    assert not (tmp_path / "missing.db").exists()


# ---------------------------------------------------------------- thumbnail function


def test_thumbnail_sizes_from_a_base64_body_then_runs_warm() -> None:
    handler = load_handler(SHOP / "functions" / "thumbnail.py")
    body = json.dumps({"width": 4000, "height": 3000, "max": 256}).encode()
    context = LambdaContext("thumbnail")

    cold = handler(http_event("POST", "/thumbnail", body, base64_body=True), context)
    assert cold["statusCode"] == 200
    result = response_json(cold)
    assert result["thumbnail"] == {"width": 256, "height": 192}
    assert result["source"] == {"width": 4000, "height": 3000}
    assert result["request_id"] == context.aws_request_id
    assert result["cold"] is True
    assert result["init_ms"] > 0
    assert result["resize"]["box_reduce"] == 8
    assert result["resize"]["taps"] >= 6

    warm_context = LambdaContext("thumbnail")
    warm = response_json(handler(http_event("POST", "/thumbnail", body), warm_context))
    assert warm["thumbnail"] == {"width": 256, "height": 192}
    assert warm["cold"] is False
    assert warm["init_ms"] == result["init_ms"]  # the init phase ran once
    assert warm["request_id"] == warm_context.aws_request_id


def test_thumbnail_reads_the_query_string_and_never_enlarges() -> None:
    handler = load_handler(SHOP / "functions" / "thumbnail.py")
    query = {"width": "1080", "height": "1920", "max": "128"}
    portrait = response_json(
        handler(http_event("POST", "/thumbnail", query=query), LambdaContext("t"))
    )
    assert portrait["thumbnail"] == {"width": 72, "height": 128}

    small = json.dumps({"width": 40, "height": 30}).encode()
    same = response_json(handler(http_event("POST", "/thumbnail", small), LambdaContext("t")))
    assert same["thumbnail"] == {"width": 40, "height": 30}  # max defaults to 128
    assert same["scale"] == 1.0


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"width": 0, "height": 10}',
        b'{"width": 10}',
        b'{"width": 10, "height": 10, "max": -1}',
        b'{"width": true, "height": 10}',
        b'{"width": 10, "height": 1e9}',
        None,
    ],
)
def test_thumbnail_answers_400_to_bad_input(body: bytes | None) -> None:
    handler = load_handler(SHOP / "functions" / "thumbnail.py")
    context = LambdaContext("thumbnail")
    response = handler(http_event("POST", "/thumbnail", body), context)
    assert response["statusCode"] == 400
    assert response_json(response)["request_id"] == context.aws_request_id


def test_thumbnail_answers_400_to_a_broken_base64_body() -> None:
    handler = load_handler(SHOP / "functions" / "thumbnail.py")
    event = http_event("POST", "/thumbnail", b"{}", base64_body=True)
    event["body"] = "***not base64***"
    response = handler(event, LambdaContext("thumbnail"))
    assert response["statusCode"] == 400
    assert "base64" in response_json(response)["error"]


# ---------------------------------------------------------------- notify function


def test_notify_sends_each_order_and_reports_the_bad_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "outbox.jsonl"
    monkeypatch.setenv("NOTIFY_OUTBOX", str(outbox))
    handler = load_handler(SHOP / "functions" / "notify.py")
    order = {
        "id": 7,
        "customer": "ada@example.com",
        "items": [{"id": "tea-mug", "qty": 2}],
        "total_cents": 2400,
    }
    records = [
        sqs_record(json.dumps(order), "m-1"),
        sqs_record("this is not an order", "m-2"),
        sqs_record(json.dumps({**order, "id": 8, "customer": None}), "m-3"),
        sqs_record(json.dumps({"id": 9}), "m-4"),
    ]

    result = handler({"Records": records}, LambdaContext("notify"))

    assert result == {"batchItemFailures": [{"itemIdentifier": "m-2"}, {"itemIdentifier": "m-4"}]}
    sent = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert [(note["message_id"], note["order_id"]) for note in sent] == [("m-1", 7), ("m-3", 8)]
    assert sent[0]["to"] == "ada@example.com"
    assert sent[0]["text"] == "Order #7 confirmed: 2 item(s), 24.00 EUR."


def test_notify_writes_to_the_working_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_OUTBOX", raising=False)
    monkeypatch.chdir(tmp_path)
    handler = load_handler(SHOP / "functions" / "notify.py")
    order = {"id": 1, "items": [], "total_cents": 0}
    assert handler({"Records": [sqs_record(json.dumps(order))]}, LambdaContext("notify")) == {
        "batchItemFailures": []
    }
    assert len((tmp_path / "outbox.jsonl").read_text().splitlines()) == 1


def test_notify_answers_the_schedule_with_a_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_OUTBOX", str(tmp_path / "outbox.jsonl"))
    handler = load_handler(SHOP / "functions" / "notify.py")
    event = scheduled_event()
    assert handler(event, LambdaContext("notify")) == {"ok": True}
    assert f"heartbeat at {event['time']}" in capsys.readouterr().out
    assert not (tmp_path / "outbox.jsonl").exists()
    with pytest.raises(ValueError, match="unsupported event"):
        handler({"hello": "world"}, LambdaContext("notify"))


# ---------------------------------------------------------------- the `shoal init` template


def test_template_web_serves_and_stops_cleanly(tmp_path: Path) -> None:
    with running(TEMPLATE / "web", tmp_path, GREETING="Ahoy") as web:
        home = web.get("/")
        assert home.status == 200
        assert home.body == {"message": "Ahoy from web", "pid": web.proc.pid}
        assert web.get("/nowhere").status == 404
        assert web.stop() == 0
        assert '"GET / HTTP/1.1" 200' in web.output()


def test_template_greet_reads_the_name_from_the_query_string() -> None:
    handler = load_handler(TEMPLATE / "functions" / "greet.py")
    context = LambdaContext("greet")
    response = handler(http_event("GET", "/greet", query={"name": "Ada"}), context)
    assert response["statusCode"] == 200
    assert response_json(response) == {
        "message": "Hello, Ada!",
        "request_id": context.aws_request_id,
    }
    anonymous = response_json(handler(http_event("GET", "/greet"), LambdaContext("greet")))
    assert anonymous["message"] == "Hello, world!"
