"""Profiles: which services run, chosen by --profile / SHOAL_PROFILES (Compose's profiles)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoal.cli.main import cli
from shoal.errors import ManifestError
from shoal.manifest import load_manifest
from shoal.manifest.profiles import active_profiles, is_active

MANIFEST = """\
name: demo
services:
  web:
    command: [python3, -m, http.server]
  boxed:
    runtime: container
    image: busybox
    profiles: [containers, all-backends]
  heavy:
    command: [sleep, "1000"]
    profiles: [vms]
"""


def write(tmp: Path, text: str) -> Path:
    path = tmp / "shoal.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_no_profile_runs_only_services_without_profiles(tmp_path: Path) -> None:
    project = load_manifest(write(tmp_path, MANIFEST), environ={})
    assert list(project.manifest.services) == ["web"]
    assert project.left_out == ("boxed", "heavy")
    assert project.profiles == frozenset()


@pytest.mark.parametrize(
    ("env", "running"),
    [
        ("containers", ["web", "boxed"]),
        ("vms, containers", ["web", "boxed", "heavy"]),
        ("all-backends", ["web", "boxed"]),
        ("*", ["web", "boxed", "heavy"]),
        ("unknown", ["web"]),
    ],
)
def test_shoal_profiles_selects(tmp_path: Path, env: str, running: list[str]) -> None:
    project = load_manifest(write(tmp_path, MANIFEST), environ={"SHOAL_PROFILES": env})
    assert list(project.manifest.services) == running


def test_explicit_profiles_win_over_the_environment(tmp_path: Path) -> None:
    file = write(tmp_path, MANIFEST)
    project = load_manifest(file, environ={"SHOAL_PROFILES": "vms"}, profiles=["containers"])
    assert list(project.manifest.services) == ["web", "boxed"]


def test_dotenv_can_activate_profiles(tmp_path: Path) -> None:
    file = write(tmp_path, MANIFEST)
    (tmp_path / ".env").write_text("SHOAL_PROFILES=vms\n")
    assert list(load_manifest(file, environ={}).manifest.services) == ["web", "heavy"]


def test_inactive_services_are_still_validated(tmp_path: Path) -> None:
    text = MANIFEST.replace(
        'command: [sleep, "1000"]', 'command: [sleep, "1000"]\n    replicas: -1'
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(write(tmp_path, text), environ={})
    assert any("services.heavy.replicas" in str(p) for p in caught.value.problems)


def test_active_service_depending_on_an_inactive_one_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    text = MANIFEST.replace(
        "    command: [python3, -m, http.server]\n",
        "    command: [python3, -m, http.server]\n    depends_on: [heavy]\n",
    )
    file = write(tmp_path, text)
    with pytest.raises(ManifestError) as caught:
        load_manifest(file, environ={})
    (problem,) = caught.value.problems
    assert problem.line == 5
    assert "which the active profiles leave out" in problem.message
    assert "--profile vms" in problem.hint
    assert list(load_manifest(file, environ={"SHOAL_PROFILES": "vms"}).manifest.services) == [
        "web",
        "heavy",
    ]


def test_bad_profile_name_is_a_schema_error(tmp_path: Path) -> None:
    text = MANIFEST.replace("profiles: [vms]", "profiles: ['-vms']")
    with pytest.raises(ManifestError) as caught:
        load_manifest(write(tmp_path, text), environ={})
    assert any("services.heavy.profiles" in str(p) for p in caught.value.problems)


def test_parsing_of_the_variable() -> None:
    assert active_profiles({"SHOAL_PROFILES": " a,b  c,,"}) == {"a", "b", "c"}
    assert active_profiles({}) == frozenset()
    assert is_active([], set())
    assert not is_active(["a"], {"b"})
    assert is_active(["a"], {"*"})


def test_validate_names_what_it_leaves_out_and_profile_flag_includes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--profile` sets SHOAL_PROFILES for the rest of the process (a detached daemon inherits
    # it): setenv first, so that the teardown removes what the command leaves behind.
    monkeypatch.setenv("SHOAL_PROFILES", "")
    monkeypatch.delenv("SHOAL_PROFILES")
    file = write(tmp_path, MANIFEST)
    result = CliRunner().invoke(cli, ["validate", "-f", str(file)])
    assert result.exit_code == 0, result.output
    assert "left out (their profiles are not active): boxed, heavy" in result.output
    result = CliRunner().invoke(cli, ["validate", "--profile", "*", "-f", str(file)])
    assert result.exit_code == 0, result.output
    assert "left out" not in result.output
    assert "boxed" in result.output
