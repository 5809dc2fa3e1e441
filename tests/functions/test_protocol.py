"""Framing: the parser fed in every way, descriptors passed along, the asyncio channel."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest

from shoal.functions import instance, protocol
from shoal.functions.protocol import Channel, FrameParser, FrameReader, ProtocolError

FRAMES: list[protocol.Frame] = [
    ({"op": "invoke", "id": "a", "t": 3000}, b'{"x": 1}'),
    ({"op": "hello"}, b""),
]


def test_parser_reads_frames_fed_whole_or_byte_by_byte() -> None:
    data = b"".join(protocol.encode(h, b) for h, b in FRAMES)
    assert FrameParser().feed(data) == FRAMES
    parser = FrameParser()
    got: list[protocol.Frame] = []
    for i in range(len(data)):
        got.extend(parser.feed(data[i : i + 1]))
    assert got == FRAMES


def test_parser_keeps_a_partial_frame_until_complete() -> None:
    data = protocol.encode({"op": "result"}, b"x" * 1000)
    parser = FrameParser()
    assert parser.feed(data[:500]) == []
    assert parser.feed(data[500:]) == [({"op": "result"}, b"x" * 1000)]


def test_parser_refuses_what_is_not_a_frame() -> None:
    with pytest.raises(ProtocolError, match="too large"):
        FrameParser().feed(protocol.PREFIX.pack(protocol.MAX_HEADER + 1, 0))
    with pytest.raises(ProtocolError, match="not JSON"):
        FrameParser().feed(protocol.PREFIX.pack(3, 0) + b"{{{")
    with pytest.raises(ProtocolError, match="not a JSON object"):
        FrameParser().feed(protocol.PREFIX.pack(2, 0) + b"[]")


def test_hand_built_frames_are_json() -> None:
    assert FrameParser().feed(instance.hello_frame(1234)) == [({"op": "hello", "pid": 1234}, b"")]
    for request_id in ("3f2a-bc_1.2", 'needs "escaping"'):
        ((header, body),) = FrameParser().feed(instance.result_frame(request_id, 1.5, 7, b"[1]"))
        assert header == {"op": "result", "id": request_id, "ok": True, "ms": 1.5, "rss": 7}
        assert body == b"[1]"


def test_descriptors_travel_with_their_frames() -> None:
    a, b = socket.socketpair()
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        protocol.send_frame(a, {"op": "spawn", "seq": 1, "fds": 1}, fds=[w1])
        protocol.send_frame(a, {"op": "other"})
        protocol.send_frame(a, {"op": "spawn", "seq": 2, "fds": 1}, fds=[w2])
        reader = FrameReader(b, fds=True)
        received: list[tuple[protocol.Header, list[int]]] = []
        while len(received) < 3:
            frame = reader.read()
            assert frame is not None
            received.append((frame[0], reader.take_fds(frame[0])))
        assert [h["op"] for h, _ in received] == ["spawn", "other", "spawn"]
        assert received[1][1] == []
        for (_, (fd,)), reading in zip((received[0], received[2]), (r1, r2), strict=True):
            os.write(fd, b"!")
            assert os.read(reading, 1) == b"!"
            os.close(fd)
    finally:
        for fd in (r1, w1, r2, w2):
            try:
                os.close(fd)
            except OSError:
                continue
        a.close()
        b.close()


def test_raw_descriptor_side_reads_and_writes() -> None:
    a, b = socket.socketpair()
    with a, b:
        protocol.write_frame(a.fileno(), {"op": "x"}, b"body")
        reader = FrameReader(b.fileno())
        assert reader.read() == ({"op": "x"}, b"body")
        a.shutdown(socket.SHUT_WR)
        assert reader.read() is None


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_channel_round_trip_with_large_bodies_and_shutdown() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    received: list[protocol.Frame] = []
    closed: asyncio.Future[Exception | None] = loop.create_future()
    channel = Channel(loop, ours, lambda h, b: received.append((h, b)), closed.set_result)
    big = os.urandom(8 << 20)  # more than the socket buffer: partial writes, add_writer

    def echo() -> None:
        reader = FrameReader(theirs)
        while (frame := reader.read()) is not None:
            protocol.send_frame(theirs, {"echo": frame[0]["n"]}, frame[1])
        theirs.close()

    thread = threading.Thread(target=echo)
    thread.start()
    for n in range(3):
        assert channel.send({"n": n}, big if n == 1 else b"small")
    channel.shutdown()
    assert await asyncio.wait_for(closed, 5) is None  # the peer closed after our EOF
    thread.join()
    assert [h for h, _ in received] == [{"echo": 0}, {"echo": 1}, {"echo": 2}]
    assert received[1][1] == big
    assert channel.closed
    assert not channel.send({"late": True})


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_channel_closes_descriptors_it_could_not_send() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    channel = Channel(loop, ours, lambda h, b: None, lambda e: None)
    channel.close()
    r, w = os.pipe()
    assert not channel.send({"op": "spawn", "fds": 1}, fds=[w])
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(w)
    os.close(r)
    theirs.close()
