"""``shoal deploy --target k8s``: the server-side apply requests, the dry run, and the official
client sending them over real HTTP to a recording API endpoint on 127.0.0.1 (no cluster runs on
this machine; a test against a real one runs only where a kubeconfig reaches one)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from shoal.deploying.kubernetes import APPLY_TYPE, apply, apply_requests, dry_run_text
from shoal.errors import DeployError, ExitCode
from shoal.exporters.kubernetes import export_kubernetes
from shoal.manifest import Manifest
from tests.cli.test_commands import REPO, shoal

pytest.importorskip("kubernetes", reason="the kubernetes client (pip install 'shoal[kubernetes]')")


class Recorder(BaseHTTPRequestHandler):
    """Answers every PATCH like an API server: the object back, or a Status when told to."""

    seen: list[dict[str, Any]]
    refuse: bool

    def do_PATCH(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        self.seen.append(
            {
                "path": self.path,
                "type": self.headers.get("Content-Type"),
                "auth": self.headers.get("Authorization"),
                "body": body,
            }
        )
        status, answer = 200, body
        if self.refuse:
            status = 422
            answer = {"kind": "Status", "message": "Deployment.apps is invalid: spec: bad"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def api_server() -> Iterator[tuple[ThreadingHTTPServer, type[Recorder]]]:
    handler = type("Handler", (Recorder,), {"seen": [], "refuse": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-apiserver", daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def kubeconfig(folder: Path, port: int) -> Path:
    path = folder / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "here", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "me", "user": {"token": "t0ken"}}],
        "contexts": [
            {"name": "test", "context": {"cluster": "here", "user": "me", "namespace": "shop"}}
        ],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_requests_are_server_side_applies(shop: Manifest) -> None:
    requests = apply_requests(export_kubernetes(shop), "prod")
    paths = {r.path for r in requests}
    assert "/apis/apps/v1/namespaces/prod/deployments/catalog" in paths
    assert "/api/v1/namespaces/prod/services/catalog" in paths
    assert "/apis/networking.k8s.io/v1/namespaces/prod/ingresses/shop" in paths
    assert "/apis/batch/v1/namespaces/prod/cronjobs/nightly-report" in paths
    assert "/apis/serving.knative.dev/v1/namespaces/prod/services/thumbnail" in paths
    assert "/apis/eventing.knative.dev/v1/namespaces/prod/triggers/notify-orders-created" in paths
    assert "/apis/sources.knative.dev/v1/namespaces/prod/pingsources/notify-schedule-1" in paths
    assert all(r.query == (("fieldManager", "shoal"), ("force", "true")) for r in requests)
    assert all(r.body["metadata"]["namespace"] == "prod" for r in requests)
    kinds = [r.kind for r in requests]
    assert kinds.index("Broker") < kinds.index("Trigger")  # what a trigger names exists first


def test_dry_run_prints_every_request(shop: Manifest) -> None:
    text = dry_run_text(apply_requests(export_kubernetes(shop), "default"))
    heads = [line for line in text.splitlines() if line.startswith("# PATCH ")]
    assert len(heads) == len(apply_requests(export_kubernetes(shop), "default"))
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "CronJob", "Trigger"}


def test_the_official_client_sends_them(
    shop: Manifest,
    api_server: tuple[ThreadingHTTPServer, type[Recorder]],
    tmp_path: Path,
) -> None:
    server, handler = api_server
    config = kubeconfig(tmp_path, server.server_address[1])
    requests = apply_requests(export_kubernetes(shop), "shop")
    lines = apply(requests, kubeconfig=str(config))
    assert lines[0].endswith("applied") and len(lines) == len(requests)
    assert [s["path"].split("?")[0] for s in handler.seen] == [r.path for r in requests]
    first = handler.seen[0]
    assert first["type"] == APPLY_TYPE and first["auth"] == "Bearer t0ken"
    assert "fieldManager=shoal" in first["path"] and "force=true" in first["path"]
    assert first["body"] == requests[0].body


def test_a_refusal_is_a_deploy_error(
    shop: Manifest,
    api_server: tuple[ThreadingHTTPServer, type[Recorder]],
    tmp_path: Path,
) -> None:
    server, handler = api_server
    handler.refuse = True
    config = kubeconfig(tmp_path, server.server_address[1])
    with pytest.raises(DeployError, match=r"HTTP 422 Deployment.apps is invalid"):
        apply(apply_requests(export_kubernetes(shop), "shop"), kubeconfig=str(config))


def test_cli_dry_run_and_apply(
    api_server: tuple[ThreadingHTTPServer, type[Recorder]], tmp_path: Path
) -> None:
    server, handler = api_server
    config = kubeconfig(tmp_path, server.server_address[1])
    env = {"KUBECONFIG": str(config)}
    shop_dir = str(REPO / "examples" / "shop")
    done = shoal("deploy", "-f", shop_dir, "-t", "k8s", "--dry-run", cwd=tmp_path, env=env)
    assert done.returncode == ExitCode.OK, done.stderr
    assert "# PATCH /apis/apps/v1/namespaces/shop/deployments/catalog" in done.stdout
    assert "what k8s cannot express" in done.stderr
    assert handler.seen == []  # a dry run sends nothing
    done = shoal("deploy", "-f", shop_dir, "-t", "k8s", cwd=tmp_path, env=env)
    assert done.returncode == ExitCode.OK, done.stderr
    assert "deployment/catalog applied" in done.stdout
    assert handler.seen


def test_cli_without_a_cluster_says_so(tmp_path: Path) -> None:
    env = {"KUBECONFIG": str(tmp_path / "missing")}
    shop_dir = str(REPO / "examples" / "shop")
    done = shoal("deploy", "-f", shop_dir, "-t", "k8s", cwd=tmp_path, env=env)
    assert done.returncode == ExitCode.FAILURE
    assert "deploy to k8s: no usable kubeconfig" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_real_cluster(shop: Manifest) -> None:
    """Against the kubeconfig's cluster, where one is reachable (never on this machine)."""
    if not os.environ.get("SHOAL_TEST_KUBERNETES"):
        pytest.skip(
            "no Kubernetes cluster is reachable from this machine; set SHOAL_TEST_KUBERNETES=1 "
            "with a kubeconfig (and Knative installed) to apply examples/shop for real"
        )
    lines = apply(apply_requests(export_kubernetes(shop), "default"))
    assert all(line.endswith("applied") for line in lines)
