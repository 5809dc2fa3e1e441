"""Loading whole manifests: every problem at once, each on the right line, with a hint."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shoal.errors import ManifestError, ManifestNotFound, Problem
from shoal.manifest import load_manifest


def write(tmp: Path, text: str, name: str = "shoal.yaml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problems_of(tmp: Path, text: str, env: dict[str, str] | None = None) -> list[Problem]:
    write(tmp, text)
    with pytest.raises(ManifestError) as info:
        load_manifest(cwd=tmp, environ=env or {})
    return info.value.problems


def test_minimal_manifest_gets_defaults(tmp_path: Path) -> None:
    write(tmp_path, "name: tiny\n")
    project = load_manifest(cwd=tmp_path, environ={})
    m = project.manifest
    assert m.name == "tiny"
    assert (m.gateway.host, m.gateway.port, m.gateway.timeout) == ("127.0.0.1", 8000, 30.0)
    assert m.services == {} and m.functions == {}
    assert project.root == tmp_path.resolve()


def test_several_mistakes_one_line_each_on_the_right_line(tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    problems = problems_of(
        tmp_path,
        """
        name: shop
        gateway: {port: 8000}
        services:
          api:
            command: [python3, app.py]
            workdir: ./api
            port: 80800
            prot: 9
            replicas: many
            restart: {policy: sometimes}
            depends_on: {db: healthy}
            health: {http: healthz}
          web:
            runtime: containr
            image: nginx
            routes: [/web]
        functions:
          thumb:
            handler: functions/thumb.py:handler
            timeout: 30
            triggers:
              - event: {topic: orders.created}
        jobs:
          report: {command: [python3, r.py], schedule: "0 25 * * *"}
        """,
    )
    got = {(p.line, p.path) for p in problems}
    assert (7, "services.api.port") in got
    assert (8, "services.api.prot") in got
    assert (9, "services.api.replicas") in got
    assert (10, "services.api.restart.policy") in got
    assert (12, "services.api.health.http") in got
    assert (14, "services.web.runtime") in got
    assert (20, "functions.thumb.timeout") in got
    assert (24, "jobs.report.schedule") in got
    by_path = {p.path: p for p in problems}
    assert by_path["services.api.port"].render() == (
        "shoal.yaml:7:11: services.api.port: 80800 is out of range 1-65535"
    )
    assert by_path["services.api.prot"].hint == "did you mean 'port'?"
    assert by_path["services.api.prot"].column == 5
    assert "'containr' is not one of" in by_path["services.web.runtime"].message
    assert by_path["services.web.runtime"].hint == "did you mean 'container'?"
    assert "25" in by_path["jobs.report.schedule"].message
    assert "30s" in by_path["functions.thumb.timeout"].message
    assert len(problems) == len(got)  # one line per mistake, none repeated


def test_cross_checks_run_once_the_schema_is_satisfied(tmp_path: Path) -> None:
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "thumb.py").write_text("def handle(event, context):\n    return 1\n")
    problems = problems_of(
        tmp_path,
        """
        name: shop
        services:
          api:
            command: python3 app.py
            depends_on: {db: healthy, web: started}
            routes: [/api]
          web:
            command: python3 web.py
            depends_on: [api]
            routes: [/api]
        functions:
          thumb:
            handler: functions/thumb.py:handler
            triggers:
              - event: {topic: order.created, dead_letter: orders.dead}
              - http: {path: /api, methods: [get]}
          gone:
            handler: functions/missing.py:handler
        topics:
          orders.created: {}
        """,
    )
    rendered = [p.render() for p in problems]
    assert any(
        "5:18: services.api.depends_on.db: 'db' is not a service or job" in r for r in rendered
    )
    assert any("dependency cycle: api -> web -> api" in r for r in rendered)
    assert any(":10:14: services.web.routes[0]: route '/api' (all methods)" in r for r in rendered)
    assert any("functions.thumb.triggers[1].http.path: route '/api' (GET)" in r for r in rendered)
    assert any(
        "topic 'order.created' is not declared (did you mean 'orders.created'?)" in r
        for r in rendered
    )
    assert any("dead-letter topic 'orders.dead' is not declared" in r for r in rendered)
    assert any("defines no 'handler' (did you mean 'handle'?)" in r for r in rendered)
    assert any("functions/missing.py" in r and "does not exist" in r for r in rendered)


def test_interpolation_from_env_and_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GW_PORT=9100\nLEVEL=debug\n")
    write(
        tmp_path,
        """
        name: app
        gateway: {port: "${GW_PORT}"}
        services:
          api:
            command: [python3, -m, http.server, "${API_PORT:-8081}"]
            env: {LEVEL: "${LEVEL}", HOME_DIR: "$${HOME}"}
        """,
    )
    m = load_manifest(cwd=tmp_path, environ={"LEVEL": "warning"}).manifest
    assert m.gateway.port == 9100
    assert m.services["api"].command == ["python3", "-m", "http.server", "8081"]
    assert m.services["api"].env == {"LEVEL": "warning", "HOME_DIR": "${HOME}"}


def test_unset_variable_is_an_error_at_its_line(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "name: app\ngateway:\n  port: ${NOPE}\n")
    assert problems[0].render().startswith("shoal.yaml:3:9: gateway.port: ${NOPE} is not set")


def test_bad_dotenv_line_is_reported(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OK=1\nthis is wrong\n")
    problems = problems_of(tmp_path, "name: app\n")
    assert problems[0].file == ".env" and problems[0].line == 2


def test_extension_keys_are_ignored(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        x-common: &common {restart: {policy: on-failure}, stop_grace_period: 2s}
        name: app
        services:
          a: {<<: *common, command: [python3, a.py]}
        """,
    )
    service = load_manifest(cwd=tmp_path, environ={}).manifest.services["a"]
    assert service.restart.policy == "on-failure" and service.stop_grace_period == 2.0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "expected a mapping of settings, got a list"),
        ("name: [\n", "YAML syntax error"),
        ("services: {}\n", "'name' is required"),
        ("name: Shop_1\n", "not a valid name"),
        ("name: app\nservices:\n  Bad_Name: {command: x}\n", "not a valid name"),
        ("name: app\nservices: []\n", "expected a mapping (key: value), got a list"),
        ("name: app\nservices:\n  a: {command: ''}\n", "the command is empty"),
        ("name: app\nservices:\n  a: {command: 'x \"unclosed'}\n", "cannot be split"),
        ("name: app\nservices:\n  a: {command: x, replicas: 2, autoscale: {max: 3}}\n", "not both"),
        ("name: app\nservices:\n  a: {command: x, health: {interval: 1s}}\n", "exactly one of"),
        ("name: app\nservices:\n  a: {command: x, update: {max_surge: 0}}\n", "cannot both be 0"),
        ("name: app\nservices:\n  a: {command: x, env: {1BAD: x}}\n", "not a valid environment"),
        ("name: app\nservices:\n  a: {runtime: container}\n", "needs an image or a build"),
        ("name: app\nservices:\n  a: {image: nginx}\n", "did you mean runtime: container"),
        ("name: app\nservices:\n  a: {command: x, routes: [api]}\n", "must start with '/'"),
        ("name: app\nservices:\n  a: {command: x, routes: [/a/../b]}\n", "not a normalised path"),
        ("name: app\nservices:\n  a: {command: x, resources: {memory: 12X}}\n", "not a size"),
        ("name: app\nfunctions:\n  f: {handler: f.py}\n", "write FILE.py:FUNCTION"),
        ("name: app\nfunctions:\n  f: {handler: 'f.py:h', triggers: [{}]}\n", "exactly one of"),
        (
            "name: app\nfunctions:\n  f: {handler: 'f.py:h', min_instances: 5, max_instances: 2}\n",
            "greater than",
        ),
        ("name: app\njobs:\n  j: {command: x, schedule: 'rate(5 minute)'}\n", "rate(5 minute)"),
        ("name: app\njobs:\n  j: {command: x, timezone: Mars/Olympus}\n", "not a known time zone"),
        ("name: app\nservices:\n  a: {command: x, port: 8000}\n", "already used by the gateway"),
        ("name: app\nservices:\n  a: {command: x, port: 9000, replicas: 2}\n", "cannot all listen"),
        ("name: app\nservices:\n  a: {command: x}\njobs:\n  a: {command: y}\n", "already used by"),
        ("name: app\nservices:\n  a: {command: x, autoscale: {max: 2}}\n", "has no routes"),
        ("name: app\nservices:\n  a: {command: x, workdir: nowhere}\n", "does not exist"),
        (
            "name: app\nservices:\n  a: {command: x, depends_on: {a: started}}\n",
            "cannot depend on itself",
        ),
        (
            "name: app\nservices:\n  a: {command: x, depends_on: {b: healthy}}\n"
            "  b: {command: y}\n",
            "no health check",
        ),
        ("name: app\nbogus: 1\n", "unknown key 'bogus'"),
    ],
)
def test_each_mistake_has_a_clear_message(tmp_path: Path, text: str, fragment: str) -> None:
    problems = problems_of(tmp_path, text)
    assert any(fragment in p.render() for p in problems), [p.render() for p in problems]
    assert all(p.file.endswith(("shoal.yaml", ".env")) for p in problems)


def test_handler_syntax_error_points_into_the_handler(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text("def handler(event, context:\n    pass\n")
    problems = problems_of(tmp_path, "name: app\nfunctions:\n  f: {handler: 'f.py:handler'}\n")
    assert problems[0].file.endswith("f.py") and problems[0].line == 1
    assert "syntax error" in problems[0].message


def test_manifest_discovery(tmp_path: Path) -> None:
    with pytest.raises(ManifestNotFound, match="shoal init"):
        load_manifest(cwd=tmp_path, environ={})
    write(tmp_path, "name: yml\n", "shoal.yml")
    assert load_manifest(cwd=tmp_path, environ={}).manifest.name == "yml"
    write(tmp_path, "name: yaml\n")
    assert load_manifest(cwd=tmp_path, environ={}).manifest.name == "yaml"
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub, "name: other\n", "other.yaml")
    assert load_manifest("sub/other.yaml", cwd=tmp_path, environ={}).manifest.name == "other"
    assert load_manifest("", cwd=tmp_path, environ={}).manifest.name == "yaml"
    with pytest.raises(ManifestNotFound, match="no such file"):
        load_manifest("missing.yaml", cwd=tmp_path, environ={})


def test_problems_name_the_file_as_the_user_gave_it(tmp_path: Path) -> None:
    sub = tmp_path / "deploy"
    sub.mkdir()
    write(sub, "name: app\ngateway: {port: 0}\n", "prod.yaml")
    with pytest.raises(ManifestError) as info:
        load_manifest("deploy/prod.yaml", cwd=tmp_path, environ={})
    assert info.value.problems[0].render() == (
        "deploy/prod.yaml:2:17: gateway.port: 0 is out of range 1-65535"
    )


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "shoal.yaml").write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifest(cwd=tmp_path, environ={})


def test_digest_ignores_formatting(tmp_path: Path) -> None:
    write(tmp_path, "name: a\nservices: {s: {command: [x, y]}}\n")
    first = load_manifest(cwd=tmp_path, environ={}).digest
    write(tmp_path, "# comment\nname: a\nservices:\n  s:\n    command: x y\n")
    assert load_manifest(cwd=tmp_path, environ={}).digest == first
    write(tmp_path, "name: a\nservices: {s: {command: [x, z]}}\n")
    assert load_manifest(cwd=tmp_path, environ={}).digest != first
