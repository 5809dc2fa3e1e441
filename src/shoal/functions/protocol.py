"""Framing between the dispatcher (in the daemon) and the function processes: tiny and fast.

The pool talks to the forkserver, to each template and to each instance over Unix stream
sockets (socketpairs, so nothing listens and nothing needs a path). Every message is a frame::

    +---------------+---------------+-----------------------+--------------------+
    | header length | body length   | header                | body               |
    | u32, little   | u32, little   | one JSON object, UTF-8| raw bytes, or none |
    +---------------+---------------+-----------------------+--------------------+

The header says what the message is (``{"op": "invoke", "id": ..., "t": 3000}``); the body is
the payload as raw bytes (an event or a result, already JSON), so it is never escaped into the
header. A frame can carry file descriptors (SCM_RIGHTS) sent with its first byte; its header then
says how many (``"fds": 1``) and the receiver hands out the descriptors it got, in order.

Two sides, one format:

- **sync** (templates and instances: blocking sockets, one reading thread): :func:`send_frame`
  and :class:`FrameReader`;
- **asyncio** (the dispatcher): :class:`Channel`, a non-blocking socket driven straight by
  ``loop.add_reader`` / ``add_writer``: no transport, no stream, no task per connection.

Forked processes import this module, so it stays cheap: no asyncio, no typing (types only).
"""

from __future__ import annotations

import array
import json
import os
import socket
import struct
from collections import deque

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

PREFIX = struct.Struct("<II")
MAX_HEADER = 1 << 20
"""Bytes a header may take; more means a broken peer."""
MAX_BODY = 256 << 20
"""Bytes a body may take (Lambda's synchronous payload limit is 6 MB; events can be larger)."""
MAX_FDS = 16
"""Descriptors accepted with one ``recvmsg`` (the senders here pass one per frame)."""
READ_SIZE = 256 * 1024
INLINE_BODY = 64 * 1024
"""Bodies up to this size are copied into the frame's one buffer; larger ones are sent after it."""

Header = dict[str, "Any"]
Frame = tuple[Header, bytes]
_dumps = json.JSONEncoder(separators=(",", ":")).encode


class ProtocolError(Exception):
    """The peer sent something that is not a frame (too large, or a header that is not JSON)."""


def encode(header: Mapping[str, Any], body: bytes = b"") -> bytes:
    """One frame as bytes."""
    head = _dumps(header).encode()
    return PREFIX.pack(len(head), len(body)) + head + body


def encode_parts(header: Mapping[str, Any], body: bytes) -> tuple[bytes, bytes]:
    """A frame as (prefix + header, body): large bodies are not copied into a new buffer."""
    head = _dumps(header).encode()
    if len(body) <= INLINE_BODY:
        return PREFIX.pack(len(head), len(body)) + head + body, b""
    return PREFIX.pack(len(head), len(body)) + head, body


class FrameParser:
    """Bytes in, whole frames out; keeps a partial frame until the rest arrives."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by ``data`` (often exactly one)."""
        buffer = self._buffer
        view: bytes | bytearray
        if buffer:
            buffer += data
            view = buffer
        else:
            view = data
        frames: list[Frame] = []
        size = len(view)
        pos = 0
        while size - pos >= 8:
            head_len, body_len = PREFIX.unpack_from(view, pos)
            if head_len > MAX_HEADER or body_len > MAX_BODY:
                raise ProtocolError(f"frame too large: header {head_len}, body {body_len} bytes")
            start = pos + 8
            end = start + head_len + body_len
            if end > size:
                break
            try:
                header = json.loads(view[start : start + head_len])
            except ValueError as exc:
                raise ProtocolError(f"frame header is not JSON: {exc}") from exc
            if not isinstance(header, dict):
                raise ProtocolError("frame header is not a JSON object")
            frames.append((header, bytes(view[start + head_len : end])))
            pos = end
        if buffer:
            del buffer[:pos]
        elif pos < size:
            buffer += view[pos:]
        return frames


# ---------------------------------------------------------------- sync side


def send_frame(
    sock: socket.socket, header: Mapping[str, Any], body: bytes = b"", fds: Sequence[int] = ()
) -> None:
    """Send one frame on a blocking socket, with ``fds`` passed along its first byte."""
    first, rest = encode_parts(header, body)
    if fds:
        sent = sock.sendmsg(
            [first], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        )
        if sent < len(first):
            sock.sendall(memoryview(first)[sent:])
    else:
        sock.sendall(first)
    if rest:
        sock.sendall(rest)


def write_frame(fd: int, header: Mapping[str, Any], body: bytes = b"") -> None:
    """Send one frame on a blocking descriptor (no socket object: instances use raw fds)."""
    write_all(fd, encode(header, body))


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FrameReader:
    """Frames from a blocking socket (or a raw descriptor); with ``fds=True`` descriptors passed
    along are kept in arrival order and handed to the frames whose header asks for them
    (``"fds": n``)."""

    __slots__ = ("_fds", "_frames", "_parser", "_sock", "_with_fds")

    def __init__(self, sock: socket.socket | int, *, fds: bool = False) -> None:
        if fds and isinstance(sock, int):
            raise ValueError("descriptors can only be received with a socket object")
        self._sock = sock
        self._with_fds = fds
        self._parser = FrameParser()
        self._frames: deque[Frame] = deque()
        self._fds: deque[int] = deque()

    @property
    def pending_fds(self) -> tuple[int, ...]:
        """Descriptors received but not handed out yet (a forked child must close them)."""
        return tuple(self._fds)

    def fill(self) -> bool:
        """One read from the socket (blocking); False at end of stream."""
        sock = self._sock
        if isinstance(sock, int):
            data = os.read(sock, READ_SIZE)
        elif self._with_fds:
            space = socket.CMSG_SPACE(MAX_FDS * 4)
            data, ancillary, _flags, _addr = sock.recvmsg(READ_SIZE, space)
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    got = array.array("i")
                    got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
                    self._fds.extend(got)
        else:
            data = sock.recv(READ_SIZE)
        if not data:
            return False
        self._frames.extend(self._parser.feed(data))
        return True

    def next_frame(self) -> Frame | None:
        """The next frame already read, or None."""
        return self._frames.popleft() if self._frames else None

    def take_fds(self, header: Mapping[str, Any]) -> list[int]:
        """The descriptors that came with the frame of ``header``."""
        count = header.get("fds", 0)
        if not isinstance(count, int) or count > len(self._fds):
            raise ProtocolError(f"frame expects {count} descriptors, {len(self._fds)} arrived")
        return [self._fds.popleft() for _ in range(count)]

    def read(self) -> Frame | None:
        """The next frame, reading as needed; None at end of stream."""
        while not self._frames:
            if not self.fill():
                return None
        return self._frames.popleft()


# ---------------------------------------------------------------- asyncio side

if TYPE_CHECKING:
    OnFrame = Callable[[Header, bytes], None]
    OnClose = Callable[[Exception | None], None]


class Channel:
    """One socket on the event loop: frames in through ``on_frame``, out through :meth:`send`.

    ``on_close`` is called once, when the peer closes its end (``None``) or the socket fails
    (the error); not when this side calls :meth:`close`. :meth:`shutdown` closes only the
    writing half: the peer reads end-of-stream and this side keeps reading until it closes.
    Descriptors given to :meth:`send` belong to the channel from then on: it closes them once
    the kernel has them (or when it closes).
    """

    __slots__ = (
        "_fd",
        "_loop",
        "_on_close",
        "_on_frame",
        "_out",
        "_parser",
        "_reading",
        "_sock",
        "_writing",
        "closed",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_frame: OnFrame,
        on_close: OnClose,
    ) -> None:
        sock.setblocking(False)
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._on_frame = on_frame
        self._on_close = on_close
        self._parser = FrameParser()
        self._out: deque[tuple[memoryview, list[int]]] = deque()
        self._writing = False
        self._reading = True
        self.closed = False
        loop.add_reader(self._fd, self._readable)

    def send(self, header: Mapping[str, Any], body: bytes = b"", fds: Sequence[int] = ()) -> bool:
        """Queue one frame; False (and ``fds`` closed) if the channel is closed."""
        if self.closed:
            _close_all(fds)
            return False
        first, rest = encode_parts(header, body)
        owned = list(fds)
        if self._out:
            self._out.append((memoryview(first), owned))
        else:
            try:
                if owned:
                    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", owned))]
                    sent = self._sock.sendmsg([first], ancillary)
                    _close_all(owned)
                    owned = []
                else:
                    sent = self._sock.send(first)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                _close_all(owned)
                self._fail(exc)
                return False
            if sent < len(first):
                self._out.append((memoryview(first)[sent:], owned))
        if rest:
            self._out.append((memoryview(rest), []))
        if self._out and not self._writing:
            self._writing = True
            self._loop.add_writer(self._fd, self._writable)
        return True

    def shutdown(self) -> None:
        """Close the writing half once everything queued is sent (the peer reads EOF)."""
        if self.closed:
            return
        if self._out:
            self._out.append((memoryview(b""), []))  # a marker: shut down when reached
            return
        _shutdown_write(self._sock)

    def close(self) -> None:
        """Stop reading and writing and close the socket; ``on_close`` is not called."""
        if self.closed:
            return
        self.closed = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        for _, fds in self._out:
            _close_all(fds)
        self._out.clear()
        self._sock.close()

    def _readable(self) -> None:
        try:
            data = self._sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        if not data:
            self._fail(None)
            return
        try:
            frames = self._parser.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        for header, body in frames:
            if self.closed:
                return
            self._on_frame(header, body)

    def _writable(self) -> None:
        while self._out:
            data, fds = self._out[0]
            if not data:  # the shutdown marker
                self._out.popleft()
                _shutdown_write(self._sock)
                continue
            try:
                if fds:
                    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                    sent = self._sock.sendmsg([data], ancillary)
                    _close_all(fds)
                    fds.clear()
                else:
                    sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail(exc)
                return
            if sent < len(data):
                self._out[0] = (data[sent:], fds)
                return
            self._out.popleft()
        self._writing = False
        self._loop.remove_writer(self._fd)

    def _fail(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.close()
        self._on_close(exc)


def _shutdown_write(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return  # the peer is gone already: it will not read anything more anyway


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            continue


__all__ = [
    "MAX_BODY",
    "MAX_HEADER",
    "PREFIX",
    "Channel",
    "Frame",
    "FrameParser",
    "FrameReader",
    "Header",
    "ProtocolError",
    "encode",
    "encode_parts",
    "send_frame",
    "write_all",
    "write_frame",
]
