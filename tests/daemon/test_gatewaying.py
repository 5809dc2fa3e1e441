"""The autoscaler's side of a manual ``shoal scale`` (GatewayLink): its collaborators, the
gateway and the supervisor, are real in tests/daemon/test_gateway.py; here they are stand-ins
so the ticks and the clock are the test's."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from shoal.daemon.gatewaying import GatewayLink
from shoal.manifest.schema import Autoscale


class Gateway:
    def __init__(self) -> None:
        self.load = 0

    def in_flight(self, name: str) -> int:
        return self.load


class Supervisor:
    def __init__(self, settings: Autoscale) -> None:
        service = SimpleNamespace(autoscale=settings)
        self.project = SimpleNamespace(manifest=SimpleNamespace(services={"web": service}))
        self.desired = {"web": SimpleNamespace(replicas=1)}
        self.calls: list[int] = []

    def ready_endpoints(self, name: str) -> list[tuple[int, int]]:
        return [(i, 9000 + i) for i in range(self.desired[name].replicas)]

    def scale(self, name: str, replicas: int) -> None:
        self.calls.append(replicas)
        self.desired[name] = SimpleNamespace(replicas=replicas)


def link_for(settings: Autoscale) -> tuple[GatewayLink, Gateway, Supervisor, list[float]]:
    gateway, supervisor, now = Gateway(), Supervisor(settings), [0.0]
    link = GatewayLink(cast(Any, gateway), cast(Any, supervisor), clock=lambda: now[0])
    return link, gateway, supervisor, now


def manual(link: GatewayLink, supervisor: Supervisor, replicas: int) -> str | None:
    supervisor.scale("web", replicas)  # what Plane.scale does, then it tells the link
    supervisor.calls.clear()
    return link.scaled("web", replicas)


def test_a_manual_scale_to_zero_is_not_undone_by_the_load_before_it() -> None:
    link, gateway, supervisor, now = link_for(Autoscale(min=0, max=3, target_concurrency=5))
    gateway.load = 3
    for second in range(0, 20, 2):  # busy: one replica is right
        now[0] = second
        link.tick()
    assert supervisor.desired["web"].replicas == 1
    assert "a request starts it again" in (manual(link, supervisor, 0) or "")
    gateway.load = 0
    for second in range(20, 30, 2):
        now[0] = second
        link.tick()
    assert supervisor.calls == []  # the busy samples from before the scale no longer count
    link.on_demand("web")  # min 0: a request still starts it
    assert supervisor.calls == [1]


def test_scaling_to_zero_below_min_pauses_until_scaled_up() -> None:
    link, gateway, supervisor, now = link_for(Autoscale(min=1, max=3, target_concurrency=5))
    assert "paused while at 0" in (manual(link, supervisor, 0) or "")
    gateway.load = 4
    for second in range(0, 10, 2):
        now[0] = second
        link.tick()
    link.on_demand("web")
    assert supervisor.calls == []
    assert "autoscaling on (1-3 replicas)" in (manual(link, supervisor, 2) or "")
    now[0] = 12
    link.tick()
    assert supervisor.calls == [1]  # resumed: load 4 over target 5 wants one replica


def test_a_service_without_autoscale_gets_no_note() -> None:
    link, _, supervisor, _ = link_for(Autoscale())
    supervisor.project.manifest.services["web"].autoscale = None
    assert link.scaled("web", 0) is None
