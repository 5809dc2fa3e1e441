"""The shoal command, run for real as a child process: output, exit codes, files written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shoal import __version__
from shoal.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]


def shoal(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_version(tmp_path: Path) -> None:
    result = shoal("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"shoal {__version__}"


def test_invalid_manifest_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    (tmp_path / "shoal.yaml").write_text(
        "name: shop\nservices:\n  api:\n    command: [python3, app.py]\n    port: 80800\n"
        "    prot: 1\n"
    )
    result = shoal("validate", cwd=tmp_path)
    assert result.returncode == ExitCode.INVALID_MANIFEST
    assert int(ExitCode.INVALID_MANIFEST) == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "shoal.yaml:5:11: services.api.port: 80800 is out of range 1-65535",
        "shoal.yaml:6:5: services.api.prot: unknown key 'prot' (did you mean 'port'?)",
        "2 problems in the manifest",
    ]
    assert "Traceback" not in result.stderr and "pydantic" not in result.stderr


def test_problems_as_json(tmp_path: Path) -> None:
    (tmp_path / "shoal.yml").write_text("name: BAD\n")
    result = shoal("--log-format", "json", "validate", cwd=tmp_path)
    assert result.returncode == 2
    body = json.loads(result.stderr)
    assert body["error"] == "ManifestError"
    assert body["problems"][0]["line"] == 1 and body["problems"][0]["path"] == "name"


def test_missing_manifest_exit_code(tmp_path: Path) -> None:
    result = shoal("validate", cwd=tmp_path)
    assert result.returncode == ExitCode.NOT_FOUND
    assert "no shoal.yaml or shoal.yml" in result.stderr
    result = shoal("validate", "-f", "nope.yaml", cwd=tmp_path)
    assert result.returncode == ExitCode.NOT_FOUND and "nope.yaml: no such file" in result.stderr


def test_usage_errors_do_not_collide_with_invalid_manifest(tmp_path: Path) -> None:
    result = shoal("validate", "--bogus", cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE
    result = shoal("frobnicate", cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE


def test_bad_log_format_env_is_a_usage_error(tmp_path: Path) -> None:
    result = shoal("schema", cwd=tmp_path, env={"SHOAL_LOG_FORMAT": "xml"})
    assert result.returncode == ExitCode.USAGE
    assert "SHOAL_LOG_FORMAT" in result.stderr


def test_schema_is_json_schema_of_the_manifest(tmp_path: Path) -> None:
    result = shoal("schema", cwd=tmp_path)
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["properties"]) >= {
        "name",
        "gateway",
        "services",
        "functions",
        "jobs",
        "topics",
    }
    assert schema["additionalProperties"] is False
    markdown = shoal("schema", "--markdown", cwd=tmp_path).stdout
    assert "#### `Service`" in markdown


def test_init_scaffolds_an_app_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "My App"
    result = shoal("init", str(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (target / "shoal.yaml").is_file()
    assert "name: my-app" in (target / "shoal.yaml").read_text()
    check = shoal("validate", cwd=target)
    assert check.returncode == 0, check.stderr
    assert "app my-app" in check.stdout
    again = shoal("init", str(target), cwd=tmp_path)
    assert again.returncode == ExitCode.USAGE and "never overwrites" in again.stderr


def test_validate_lists_what_would_run_for_the_example() -> None:
    result = shoal(
        "validate", "-f", "examples/shop/shoal.yaml", cwd=REPO, env={"SHOP_PORT": "8000"}
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "app shop" in out
    for name in ("catalog", "orders", "thumbnail", "notify", "nightly-report"):
        assert name in out


def test_validate_accepts_a_folder(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "shoal.yaml").write_text("name: folder\n")
    result = shoal("validate", "-q", "-f", "app", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == ""


@pytest.mark.parametrize("args", [["--help"], ["validate", "--help"], ["init", "--help"]])
def test_help(tmp_path: Path, args: list[str]) -> None:
    result = shoal(*args, cwd=tmp_path)
    assert result.returncode == 0 and "Usage:" in result.stdout


def test_every_command_has_help_and_well_formed_options() -> None:
    """Each command's options parse without click's warnings (a duplicate ``--file`` once hid
    the event file of ``shoal invoke`` behind the manifest option)."""
    from click.testing import CliRunner

    from shoal.cli.main import COMMANDS, cli

    for name in COMMANDS:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, (name, result.output)


def test_invoke_reads_the_event_from_file_and_the_manifest_from_f(tmp_path: Path) -> None:
    (tmp_path / "event.json").write_text("not json")
    result = shoal("invoke", "-f", str(tmp_path), "fn", "--file", "event.json", cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "not JSON" in result.stderr
