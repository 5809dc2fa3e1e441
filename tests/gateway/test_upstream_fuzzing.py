"""Property-based: whatever a replica answers, the client gets well-formed HTTP, in step.

A scripted replica answers each request with bytes Hypothesis draws: valid responses of every
framing (Content-Length, chunked, delimited by the connection's end, 204 and 304, an interim 1xx
first), with hop-by-hop headers or not, heads that repeat (so the gateway's usual-head paths
run), the same with bytes mutated or with another response appended, and raw garbage; written
whole or in two pieces. The client sends up to four keep-alive GETs in a row and parses what
comes back with llhttp. Whatever the replica did:

- what the client reads always parses, and has no interim response;
- it never holds more responses than it sent requests (no answer to a request it never made);
- a request whose replica answered with a valid response gets exactly that status and body;
- the gateway logs no bug, and afterwards still serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

import pytest
import pytest_asyncio
from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.conftest import Rig, RigFactory
from tests.gateway.wire import Request, echo, get

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


@dataclass(frozen=True)
class Answer:
    """What the replica writes for one request, and what the client must then see (if known)."""

    pieces: tuple[bytes, ...]
    close: bool  # the replica closes its connection after writing
    expect: tuple[int, bytes] | None  # (status, body) for a valid response, else None


STATUSES = st.sampled_from([200, 200, 201, 204, 304, 404, 503])
BODIES = st.sampled_from(
    [b"", b"ok", b"0123456789", b"hello\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]
)
EXTRA_HEADERS = st.sampled_from(
    [
        b"",
        b"Content-Type: text/plain\r\n",
        b"Connection: keep-alive\r\n",
        b"Connection: close\r\n",
        b"Keep-Alive: timeout=5\r\nConnection: keep-alive\r\n",
        b"Trailer: X-T\r\n",
        b"X-A: 1\r\nX-B: 2\r\n",
    ]
)
INTERIM = st.sampled_from(
    [b"", b"", b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early\r\n\r\n"]
)


@st.composite
def valid(draw: st.DrawFn) -> tuple[bytes, bool, tuple[int, bytes]]:
    """A valid response: its bytes, whether the replica must close after it, status and body."""
    status = draw(STATUSES)
    body = b"" if status in (204, 304) else draw(BODIES)
    extra = draw(EXTRA_HEADERS)
    framing = "length"
    if status not in (204, 304):
        framing = draw(st.sampled_from(["length", "chunked", "eof"]))
    head = b"HTTP/1.1 %d X\r\n%b" % (status, extra)
    if framing == "length":
        data = head + b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    elif framing == "chunked":
        cut = draw(st.integers(0, len(body)))
        chunks = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in (body[:cut], body[cut:]) if p)
        data = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    else:
        data = head + b"\r\n" + body
    close = framing == "eof" or b"close" in extra
    return draw(INTERIM) + data, close, (status, body)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid())[0])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        kind = draw(st.sampled_from(["flip", "delete", "insert"]))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "delete" and data:
            del data[at]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    kind = draw(st.sampled_from(["valid", "valid", "valid", "mutated", "appended", "garbage"]))
    expect: tuple[int, bytes] | None = None
    if kind == "valid":
        data, close, expect = draw(valid())
    elif kind == "mutated":
        data, close = draw(mutated()), True
    elif kind == "appended":  # a valid response, then another one nobody asked for, or junk
        after = st.one_of(valid().map(lambda v: v[0]), st.binary(max_size=8))
        data = draw(valid())[0] + draw(after)
        close = True
    else:
        data, close = draw(st.binary(min_size=1, max_size=60)), True
    at = draw(st.integers(0, len(data)))
    pieces = tuple(p for p in (data[:at], data[at:]) if p)
    return Answer(pieces, close, expect)


class Replies:
    """The client's side: an llhttp response parser over everything the gateway sent."""

    def __init__(self) -> None:
        self.parser = HttpResponseParser(self)
        self.status = 0
        self.body: list[bytes] = []
        self.messages: list[tuple[int, bytes]] = []

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body.append(bytes(body))

    def on_message_complete(self) -> None:
        self.messages.append((self.status, b"".join(self.body)))
        self.body = []


async def exchange(rig: Rig, script: list[Answer]) -> tuple[list[tuple[int, bytes]], int]:
    """Send a GET per answer (one connection, one at a time); the responses read, and how many
    requests were sent before the gateway closed the connection."""
    replies = Replies()
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.port)
    sent = 0
    try:
        for index in range(len(script)):
            writer.write(b"GET /api/r%d HTTP/1.1\r\nHost: a\r\n\r\n" % index)
            sent += 1
            async with asyncio.timeout(5):
                while len(replies.messages) < sent:
                    chunk = await reader.read(65536)
                    if not chunk:
                        return replies.messages, sent
                    try:
                        replies.parser.feed_data(chunk)
                    except (HttpParserError, HttpParserUpgrade) as exc:
                        pytest.fail(f"the gateway sent malformed HTTP: {exc!r}")
                    assert len(replies.messages) <= sent, replies.messages
        with contextlib.suppress(TimeoutError):  # nothing more may come: an extra would show
            async with asyncio.timeout(0.05):
                while chunk := await reader.read(65536):
                    replies.parser.feed_data(chunk)
        assert len(replies.messages) <= sent, replies.messages
        return replies.messages, sent
    except ConnectionError:
        return replies.messages, sent
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


class Scripted:
    """The replica: answers each request with the next scripted answer, and notes which."""

    def __init__(self) -> None:
        self.script: deque[Answer] = deque()
        self.answered: dict[str, Answer | None] = {}

    async def __call__(self, request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        answer = self.script.popleft() if self.script else None
        self.answered[request.target] = answer  # a retried request: the last answer counts
        if answer is None:
            writer.close()
            return
        for index, piece in enumerate(answer.pieces):
            if index:
                await writer.drain()
                await asyncio.sleep(0.002)
            writer.write(piece)
        if answer.close:
            await writer.drain()
            writer.close()


SCRIPTED = Scripted()


@pytest_asyncio.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig(
        {"api": {"routes": ["/api"]}, "ok": {"routes": ["/ok"]}},
        replicas={"api": [SCRIPTED], "ok": [echo]},
        gateway={"timeout": "1s"},
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(script=st.lists(answers(), min_size=1, max_size=4))
async def test_whatever_a_replica_sends_the_client_stays_in_step(
    rig: Rig, script: list[Answer], caplog: pytest.LogCaptureFixture
) -> None:
    SCRIPTED.script = deque(script)
    SCRIPTED.answered = {}
    with caplog.at_level(logging.ERROR):
        messages, sent = await exchange(rig, script)
    for status, _ in messages:
        assert 200 <= status <= 599, messages
    for index, (status, body) in enumerate(messages):
        answer = SCRIPTED.answered.get(f"/api/r{index}")
        if answer is not None and answer.expect is not None:
            assert (status, body) == answer.expect, (index, script)
    if sent == len(script) and all(a.expect is not None for a in script):
        assert len(messages) == sent, (messages, script)  # all valid: every one answered
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    caplog.clear()
    after = await get(rig.port, "/ok/after")
    assert after.status == 200
