"""Routing and path normalisation: pure, exhaustive, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.gateway.routing import RouteError, RouteTable, Rule, compile_routes, normalise_path
from tests.gateway.conftest import manifest


def table() -> RouteTable:
    return compile_routes(
        manifest(
            {
                "api": {"routes": [{"path": "/api", "strip_prefix": True}]},
                "admin": {"routes": ["/admin"]},
                "deep": {"routes": ["/api/v2/deep/"]},
                "site": {"routes": ["/"]},
                "shop": {"routes": [{"path": "/", "host": "Shop.Example"}]},
                "shopapi": {"routes": [{"path": "/api", "host": "shop.example"}]},
            },
            {
                "get-items": {
                    "handler": "f.py:h",
                    "triggers": [{"http": {"path": "/items", "methods": ["GET"]}}],
                },
                "add-item": {
                    "handler": "f.py:h",
                    "triggers": [{"http": {"path": "/items", "methods": ["post", "PUT"]}}],
                },
            },
        )
    )


def route(target: bytes, host: bytes | None = b"x", method: bytes = b"GET") -> tuple[str, bytes]:
    rule, forwarded = table().match(host, method, target)
    return rule.target, forwarded


def status(target: bytes, host: bytes | None = b"x", method: bytes = b"GET") -> int:
    with pytest.raises(RouteError) as caught:
        table().match(host, method, target)
    return caught.value.status


def test_compiles_service_routes_and_function_triggers() -> None:
    rules = table().rules
    assert [(r.kind, r.target) for r in rules][:2] == [("service", "api"), ("service", "admin")]
    items = [r for r in rules if r.prefix == b"/items"]
    assert {r.target for r in items} == {"get-items", "add-item"}
    assert all(r.kind == "function" for r in items)
    add = next(r for r in items if r.target == "add-item")
    assert add.methods == frozenset((b"POST", b"PUT"))
    deep = next(r for r in rules if r.target == "deep")
    assert deep.prefix == b"/api/v2/deep"  # trailing slash dropped: one prefix, one spelling
    assert next(r for r in rules if r.target == "shop").host == b"shop.example"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/api", ("api", b"/")),
        (b"/api/", ("api", b"/")),
        (b"/api/x/y?q=1&r=/..", ("api", b"/x/y?q=1&r=/..")),
        (b"/apix", ("site", b"/apix")),
        (b"/api/v2/deep", ("deep", b"/api/v2/deep")),
        (b"/api/v2/deeper", ("api", b"/v2/deeper")),
        (b"/api/v2/deep/er", ("deep", b"/api/v2/deep/er")),
        (b"/admin/users", ("admin", b"/admin/users")),
        (b"/", ("site", b"/")),
        (b"/anything", ("site", b"/anything")),
        (b"http://x/api/abs", ("api", b"/abs")),
    ],
)
def test_longest_prefix_on_segment_boundaries(target: bytes, expected: tuple[str, bytes]) -> None:
    assert route(target) == expected


def test_host_rules_come_first_case_and_port_ignored() -> None:
    assert route(b"/api/x", host=b"SHOP.example:8080") == ("shopapi", b"/api/x")
    assert route(b"/other", host=b"shop.example") == ("shop", b"/other")
    assert route(b"/api/x", host=b"elsewhere") == ("api", b"/x")
    assert route(b"/api/x", host=None) == ("api", b"/x")
    assert route(b"http://Shop.Example/api/y", host=b"ignored") == ("shopapi", b"/api/y")


def test_function_methods() -> None:
    assert route(b"/items", method=b"GET")[0] == "get-items"
    assert route(b"/items/3", method=b"PUT")[0] == "add-item"
    assert route(b"/items", method=b"DELETE")[0] == "site"  # other methods fall through
    functions_only = compile_routes(
        manifest(
            functions={
                "f": {
                    "handler": "f.py:h",
                    "triggers": [{"http": {"path": "/f", "methods": ["GET"]}}],
                }
            }
        )
    )
    with pytest.raises(RouteError) as caught:
        functions_only.match(b"x", b"DELETE", b"/f/x")
    assert caught.value.status == 405
    assert caught.value.allow == "GET"


def test_refused_methods() -> None:
    assert status(b"/api", method=b"TRACE") == 405
    assert status(b"/api", method=b"CONNECT") == 405


def test_no_route() -> None:
    only = compile_routes(manifest({"api": {"routes": ["/api"]}}))
    with pytest.raises(RouteError) as caught:
        only.match(b"x", b"GET", b"/apix")
    assert caught.value.status == 404
    with pytest.raises(RouteError):
        only.match(b"x", b"GET", b"/")


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        (b"/a/b", b"/a/b"),
        (b"//a///b//", b"/a/b/"),
        (b"/a/./b/.", b"/a/b/"),
        (b"/a/b/../c", b"/a/c"),
        (b"/a/b/..", b"/a/"),
        (b"/a/%7Euser/%41%62c", b"/a/~user/Abc"),
        (b"/a/%2a/%e2%82%ac", b"/a/%2A/%E2%82%AC"),
        (b"/a/file%2Etxt", b"/a/file.txt"),
        (b"/a/%20b", b"/a/%20b"),
        (b"/caf\xc3\xa9", b"/caf%C3%A9"),
        (b"/..a/b..", b"/..a/b.."),
    ],
)
def test_normalisation(path: bytes, normal: bytes) -> None:
    assert normalise_path(path) == normal


@pytest.mark.parametrize(
    "path",
    [
        b"/a/%2F/b",
        b"/a/%2f",
        b"/a/%5C",
        b"/a/%00",
        b"/a\\b",
        b"/a/%2E%2E/b",
        b"/a/%2e/b",
        b"/a/.%2e/b",
        b"/..",
        b"/a/../../b",
        b"/a/%zz",
        b"/a/%4",
        b"/a#frag",
        b"/a/\x01b",
        b"/a b",
    ],
)
def test_normalisation_refuses(path: bytes) -> None:
    with pytest.raises(RouteError) as caught:
        normalise_path(path)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "target",
    [
        b"/api/../admin",
        b"/api/./../admin/x",
        b"/api/%2e%2e/admin",
        b"/api%2F..%2Fadmin",
        b"/api/..%2Fadmin",
        b"/api/x/../../admin",
        b"/api/..",
        b"/api\\..\\admin",
        b"/api/%00/x",
        b"/admin/../api/x",
    ],
)
def test_no_escape_from_a_prefix(target: bytes) -> None:
    assert status(target) == 400


def test_dot_segments_that_stay_inside_are_fine() -> None:
    assert route(b"/api/v1/../v2/x") == ("api", b"/v2/x")
    assert route(b"//api//x") == ("api", b"/x")
    assert route(b"/api/./x") == ("api", b"/x")


def test_answers_are_cached_and_stay_right() -> None:
    t = table()
    first = t.match(b"x", b"GET", b"/api/a?x=1")
    assert t.match(b"x", b"GET", b"/api/a?x=1") == first
    assert t.match(b"x", b"GET", b"/api/a?x=2")[1] == b"/a?x=2"
    assert t.match(b"shop.example", b"GET", b"/api/a")[0].target == "shopapi"  # host in the key
    for i in range(5000):  # the cache is bounded
        t.match(b"x", b"GET", b"/api/%d" % i)
    assert len(t._cache) <= 4096


def test_whole_request_answers_for_the_hot_path() -> None:
    plain = compile_routes(manifest({"api": {"routes": ["/api"]}}))
    assert plain.plain
    answer = plain.match(None, b"GET", b"/api/x?y")
    assert plain.answers[b"/api/x?y"] == answer
    t = table()
    assert not t.plain  # hosts and methods change answers: they are in the key
    answer = t.match(b"shop.example", b"GET", b"/api/x")
    assert t.answers[b"shop.example", b"GET", b"/api/x"] == answer


def test_rule_labels() -> None:
    assert Rule(0, b"/api", "service", "api").label == "/api"
    assert Rule(0, b"/", "service", "s", host=b"shop.example").label == "shop.example/"


SEGMENT = st.text(alphabet="abc.%2Ef/\\~-_", max_size=12).map(lambda s: s.encode())


@given(st.lists(SEGMENT, max_size=6))
def test_any_path_normalises_to_a_clean_path_or_400(segments: list[bytes]) -> None:
    path = b"/" + b"/".join(segments)
    try:
        normal = normalise_path(path)
    except RouteError as exc:
        refused = exc.status
    else:
        refused = 0
    if refused:
        assert refused == 400
        return
    assert normal.startswith(b"/")
    assert b"//" not in normal
    parts = normal.split(b"/")
    assert b".." not in parts and b"." not in parts
    assert normalise_path(normal) == normal  # idempotent


@given(st.lists(SEGMENT, max_size=6))
def test_any_routed_path_is_inside_its_prefix(segments: list[bytes]) -> None:
    t = compile_routes(manifest({"api": {"routes": ["/api"]}, "admin": {"routes": ["/admin"]}}))
    target = b"/api/" + b"/".join(segments)
    try:
        rule, forwarded = t.match(b"x", b"GET", target)
    except RouteError as exc:
        refused = exc.status
    else:
        refused = 0
    if refused:
        assert refused in (400, 404)
        return
    assert rule.target == "api"
    assert forwarded == b"/api" or forwarded.startswith(b"/api/")
