"""Property-based: whatever bytes a client sends, the gateway answers sanely and keeps serving.

Hypothesis throws garbage at a real gateway on a real socket: random bytes, valid requests with
bytes mutated, and requests assembled from hostile parts (odd methods, targets full of dots and
escapes, header names and values with control characters, lying lengths, broken chunks). After
each, the client half-closes; the gateway must answer with well-formed HTTP (never a 500 of its
own) or just close, and must never log a bug. Then a good request must still work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.conftest import Rig, RigFactory
from tests.gateway.wire import echo, get

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

VALID = (
    b"POST /api/items?x=1 HTTP/1.1\r\nHost: shop.local\r\nContent-Length: 5\r\n"
    b"X-Forwarded-For: 1.2.3.4\r\nConnection: keep-alive\r\n\r\nhello"
    b"GET /api/two HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "delete", "insert"]))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[at]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


METHODS = st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"TRACE", b"CONNECT", b"G\x00T", b""])
TARGETS = st.lists(
    st.sampled_from([b"/api", b"..", b".", b"%2e", b"%2F", b"%00", b"\\", b"//", b"x", b"%", b"?"]),
    max_size=6,
).map(b"/".join)
NAMES = st.sampled_from(
    [
        b"Host",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Connection",
        b"Upgrade",
        b"Expect",
        b"X-A",
        b"Bad Name",
        b"\x00",
        b"",
    ]
)
VALUES = st.one_of(
    st.sampled_from(
        [
            b"chunked",
            b"5",
            b"-1",
            b"99999999999999999999",
            b"close",
            b"websocket",
            b"100-continue",
            b"a\r\nb",
            b"\x7f",
        ]
    ),
    st.binary(max_size=12),
)


@st.composite
def assembled(draw: st.DrawFn) -> bytes:
    line = b"%b %b %b\r\n" % (
        draw(METHODS),
        draw(TARGETS),
        draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 x", b""])),
    )
    headers = b"".join(
        b"%b: %b\r\n" % (draw(NAMES), draw(VALUES)) for _ in range(draw(st.integers(0, 5)))
    )
    body = draw(st.binary(max_size=20))
    return line + headers + b"\r\n" + body


REQUESTS = st.one_of(st.binary(max_size=200), mutated(), assembled())


async def poke(rig: Rig, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.port)
    try:
        writer.write(data)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        chunks = []
        async with asyncio.timeout(3):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
        return b"".join(chunks)
    except ConnectionError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def check_answer(out: bytes) -> None:
    """Every status line the gateway wrote is well-formed and never its own 500."""
    if not out:
        return
    assert out.startswith(b"HTTP/1.1 "), out[:80]
    at = 0
    while (at := out.find(b"HTTP/1.1 ", at)) >= 0:
        status = out[at + 9 : at + 12]
        if status.isdigit():
            assert 100 <= int(status) <= 599
            assert int(status) != 500, out[:300]
        at += 9


@pytest_asyncio.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig(
        {"api": {"routes": [{"path": "/api", "strip_prefix": True}]}},
        replicas={"api": [echo]},
        gateway={"timeout": "1s", "max_header": "2K", "max_body": "1K"},
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=REQUESTS)
async def test_garbage_never_breaks_the_gateway(
    rig: Rig, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="shoal.gateway"):
        out = await poke(rig, data)
    check_answer(out)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    caplog.clear()


async def test_still_serving_after_the_corpus(rig: Rig) -> None:
    for data in (
        b"\x00" * 100,
        b"GET / HTTP/1.1\r\n" * 50,
        b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n" * 3,
    ):
        await poke(rig, data)
    r = await get(rig.port, "/api/after")
    assert r.status == 200
    assert r.json()["target"] == "/after"
    assert rig.gateway.connections == set() or all(not c.busy for c in rig.gateway.connections)
