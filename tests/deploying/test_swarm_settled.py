"""When a Swarm service counts as converged, from the engine's own inspect shapes (recorded from
Docker 20.10 during an update); tests/deploying/test_swarm.py runs the same against a real
swarm: an update, and an update that Swarm rolls back."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.deploying.swarm import settled
from shoal.errors import DeployError

NAME = "shop_catalog"
OLD = {"Image": "shop/catalog:1", "Env": ["LOG_LEVEL=info"]}
NEW = {"Image": "shop/catalog:1", "Env": ["LOG_LEVEL=debug"]}


def _service(
    container: dict[str, Any], replicas: int = 2, update: dict[str, str] | None = None
) -> dict[str, Any]:
    service: dict[str, Any] = {
        "ID": "svc1",
        "Spec": {
            "Name": NAME,
            "Mode": {"Replicated": {"Replicas": replicas}},
            "TaskTemplate": {"ContainerSpec": container},
        },
    }
    if update is not None:
        service["UpdateStatus"] = update
    return service


def _task(
    container: dict[str, Any],
    state: str = "running",
    desired: str = "running",
    err: str = "",
    at: str = "2026-11-28T19:23:08Z",
) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Message": "started"}
    if err:
        status["Err"] = err
    return {
        "DesiredState": desired,
        "Status": status,
        "Spec": {"ContainerSpec": container, "Runtime": "container"},
        "UpdatedAt": at,
    }


def test_a_service_settles_when_its_replicas_run_its_current_spec() -> None:
    assert settled(_service(NEW), [_task(NEW), _task(NEW)], None)
    assert not settled(_service(NEW), [_task(NEW)], None)  # one replica short
    assert not settled(_service(NEW, replicas=1), [_task(NEW), _task(NEW)], None)
    assert not settled(_service(NEW), [_task(NEW), _task(NEW, state="starting")], None)
    # shut-down tasks of the history do not count
    assert settled(_service(NEW), [_task(NEW), _task(NEW), _task(OLD, "shutdown", "shutdown")], {})


def test_the_old_tasks_of_an_update_do_not_count() -> None:
    # right after `docker stack deploy`: the same count runs, with the spec before
    assert not settled(_service(NEW), [_task(OLD), _task(OLD)], None)
    assert not settled(_service(NEW), [_task(NEW), _task(OLD)], None)
    # while the engine says it is updating, even when the counts look right
    updating = {"State": "updating", "StartedAt": "t1", "Message": "update in progress"}
    assert not settled(_service(NEW, update=updating), [_task(NEW), _task(NEW)], None)
    done = {"State": "completed", "StartedAt": "t1", "Message": "update completed"}
    assert settled(_service(NEW, update=done), [_task(NEW), _task(NEW)], {NAME: ""})


def test_an_update_of_this_deploy_that_rolled_back_fails_with_the_tasks_error() -> None:
    rolled = {"State": "rollback_completed", "StartedAt": "t2", "Message": "rollback completed"}
    tasks = [
        _task(OLD),
        _task(OLD),
        _task(NEW, "failed", "shutdown", "task: non-zero exit (1)", "2026-11-28T19:23:09Z"),
        _task(NEW, "failed", "shutdown", "task: non-zero exit (3)", "2026-11-28T19:23:10Z"),
    ]
    with pytest.raises(DeployError) as caught:
        settled(_service(OLD, update=rolled), tasks, {NAME: "t1"})
    message = str(caught.value)
    assert f"the update of {NAME} failed and was rolled back" in message
    assert "non-zero exit (3)" in message  # the latest failure
    assert f"docker service ps --no-trunc {NAME}" in message
    # a new service (no mark) whose first update rolled back: this deploy's too
    with pytest.raises(DeployError):
        settled(_service(OLD, update=rolled), tasks, {})


def test_an_earlier_rollback_is_judged_by_the_tasks_alone() -> None:
    rolled = {"State": "rollback_completed", "StartedAt": "t1", "Message": "rollback completed"}
    assert settled(_service(OLD, update=rolled), [_task(OLD), _task(OLD)], {NAME: "t1"})
    assert settled(_service(OLD, update=rolled), [_task(OLD), _task(OLD)], None)


def test_a_paused_update_has_not_converged_and_says_why_when_it_is_this_deploys() -> None:
    paused = {
        "State": "paused",
        "StartedAt": "t2",
        "Message": "update paused due to failure or early termination of task x",
    }
    assert not settled(_service(NEW, update=paused), [_task(NEW), _task(NEW)], {NAME: "t2"})
    assert not settled(_service(NEW, update=paused), [_task(NEW), _task(NEW)], None)
    with pytest.raises(DeployError, match=r"paused \(update paused due to failure"):
        settled(_service(NEW, update=paused), [_task(NEW), _task(NEW)], {NAME: "t1"})
