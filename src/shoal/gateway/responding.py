"""The response side of an exchange: what comes back from the replica, on its way to the client.

    UpstreamConnection.data_received ──head / data / done / upgrade──▶ the client's transport
    UpstreamConnection.connection_lost ──lost──▶ a retry, a 502, or the end of a body
    (invalid bytes from the replica) ──broken──▶ a 502, or a dropped client connection
    (bytes past the response's end) ──cut──▶ the response alone, then the connection closed
                                    ──overrun──▶ (found mid-body) both connections dropped

Functions of the :class:`~shoal.gateway.exchange.Exchange` they answer for, called by
:class:`~shoal.gateway.upstreams.UpstreamConnection`. :func:`head` is the hot path: a usual
response goes out as the replica wrote it, not a byte copied or changed, and (read
whole in one go, as small responses are) returns its connection to the pool and ends the exchange
without another call.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from shoal.gateway.messages import CHUNKED, CLOSE, KEEP_ALIVE, LAST_CHUNK, raw_head

if TYPE_CHECKING:
    from shoal.gateway.exchange import Exchange
    from shoal.gateway.upstreams import UpstreamConnection, UpstreamPool

log = logging.getLogger(__name__)

_CRLF = b"\r\n"
_PROBE_STEP = 4096  # bytes fed at a time while looking for where a response ends
# in a lower-cased head: a hop-by-hop header other than "Connection: keep-alive" (the
# alternatives share their first letters: sre tries fewer branches at each line start)
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,18})[ \t]*(?=\r\n)")
_UNUSUAL = re.compile(
    rb"\r\n(?:connection:(?! keep-alive\r\n)|keep-alive:|t(?:e:|railer:|ransfer-encoding:)"
    rb"|upgrade:|proxy-)"
)


def head(ex: Exchange, up: UpstreamConnection, buf: bytes) -> None:
    """The upstream's response head is complete in ``buf``: send it, and the body so far.

    The usual case goes out exactly as it came: both sides keep-alive HTTP/1.1, a final status,
    nothing hop-by-hop in the head but perhaps ``Connection: keep-alive`` (and so no
    Transfer-Encoding: the body is framed by its Content-Length, or there is none). That one line
    is kept: it is the option the gateway would state for its own connection to the client
    (RFC 9110 §7.6.1 lets an intermediary replace the field with its own options), and cutting
    it out would copy the whole response.

    Checking a head costs more than the rest of this function (a search for its end, a lower-case
    copy, a regex), and a replica often sends the same head many times in a row (same headers,
    same length, the Date changing once a second). So the pool keeps the last head found usual:
    a response that starts with exactly that head, then the blank line, is usual too, and two
    ``startswith`` calls say so. Any other head is checked in full (the comparison fails at the
    first differing byte or on the length, so a replica whose heads all differ pays nearly nothing).
    """
    ex.status = up.status
    conn = ex.conn
    if (
        up.keep_alive
        and ex.plain
        and buf[9] != 49  # not an interim "1xx" response first
        and not ex.close_after
        and not conn.discard
        and not conn.gw.stopping
    ):
        pool = up.pool
        usual = pool.usual_head
        size = len(usual)
        if size and buf.startswith(usual) and buf.startswith(b"\r\n", size):
            end = size - 2  # the same head as the replica's last usual one: known to be usual
        else:
            end = buf.find(b"\r\n\r\n")
            found = buf[: end + 2]
            low = found.lower()
            if _UNUSUAL.search(low) is not None or not buf.startswith(b"HTTP/1.1 "):
                _head(ex, up, buf)
                return
            remember(pool, found, low, up.status)
        conn.transport.write(buf)
        ex.bytes_out = len(buf) - end - 4
        if not up.done:
            return
        # the whole response in one read (the usual case)
        up.status = 0
        up.done = False
        _pool_and_finish(ex, up, pool)
        return
    _head(ex, up, buf)


def remember(pool: UpstreamPool, usual: bytes, low: bytes, status: int) -> None:
    """Keep ``usual`` (a head found usual, up to its last header's CRLF; ``low`` is it
    lower-cased) as the pool's usual head, and the size of a whole response with it when its
    Content-Length says (one such header, a status that has a body), for :func:`whole`."""
    pool.usual_head = usual
    pool.usual_status = status
    lengths = _LENGTH.findall(low)
    if len(lengths) == 1 and status not in (204, 304):
        pool.usual_size = len(usual) + 2 + int(lengths[0])
    else:
        pool.usual_size = -1


def whole(ex: Exchange, up: UpstreamConnection, data: bytes) -> None:
    """``data`` is one whole response with the pool's usual head (:func:`remember`): its head is
    known to be usual and its Content-Length bytes follow it, so the response parser is not fed
    (it stays between two messages): the response goes out as it came, the connection back to
    the pool, the exchange ends. The caller checked ``ex.plain`` and the size and head."""
    pool = up.pool
    ex.status = pool.usual_status
    conn = ex.conn
    conn.transport.write(data)
    ex.bytes_out = len(data) - len(pool.usual_head) - 2
    _pool_and_finish(ex, up, pool)


def _pool_and_finish(ex: Exchange, up: UpstreamConnection, pool: UpstreamPool) -> None:
    """A response is complete and sent: the connection back to the pool (inline, the usual
    case), the exchange ends."""
    ex.upstream = None
    up.exchange = None
    if ex.req_done and not pool.closed and len(pool.idle) < pool.max_idle:
        up.mark = pool.sweeps
        pool.idle.append(up)
        if pool.timer is None:
            pool.arm()
        ex.finish()
        return
    _release(ex, up)
    ex.finish()


def _head(ex: Exchange, up: UpstreamConnection, buf: bytes) -> None:
    status = ex.status
    while buf[9:10] == b"1" and buf[9:12] != b"101":  # interim responses before it
        buf = buf[buf.find(b"\r\n\r\n") + 4 :]
    end = buf.find(b"\r\n\r\n")
    head, has_length, chunked, _ = raw_head(buf[: end + 2])
    rest = buf[end + 4 :]
    extra = b""
    if ex.head_method or status == 204 or status == 304:  # noqa: PLR1714
        up.done = up.done or ex.head_method  # a HEAD response ends with its head
        rest = b""
    elif has_length:
        pass
    elif chunked:
        extra = CHUNKED  # the chunks go through as they are
    elif ex.http11:  # delimited by the end of the connection: chunk it for the client
        ex.until_close = ex.chunk_out = True
        extra = CHUNKED
        if rest:
            rest = b"%x\r\n%b\r\n" % (len(rest), rest)
    else:
        ex.until_close = ex.close_after = True
    conn = ex.conn
    if ex.upgrade is not None:
        ex.close_after = True  # the client's parser is past an upgrade it did not get
    if not ex.keep_alive or ex.close_after or conn.discard or conn.gw.stopping:
        ex.close_after = True
        extra += CLOSE
    elif not ex.http11:
        extra += KEEP_ALIVE
    ex.bytes_out = len(rest)
    conn.transport.write(b"".join((head, extra, _CRLF, rest)) if extra else head + _CRLF + rest)
    if up.done:
        done(ex, up)


def data(ex: Exchange, data: bytes) -> None:
    """Body bytes after the head: forwarded unchanged (or chunked, if delimited by close)."""
    ex.bytes_out += len(data)
    conn = ex.conn
    if conn.lingering:
        return
    if ex.chunk_out:
        conn.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
    else:
        conn.transport.write(data)


def done(ex: Exchange, up: UpstreamConnection) -> None:
    """The response is complete: the connection goes back to its pool, the exchange ends."""
    if ex.chunk_out:
        ex.conn.transport.write(LAST_CHUNK)
    ex.upstream = None
    up.exchange = None
    up.status = 0
    up.done = False
    if ex.head_method:  # the parser still waits for the body a HEAD response announced
        up.parser = HttpResponseParser(up)
    _release(ex, up)
    ex.finish()


def _release(ex: Exchange, up: UpstreamConnection) -> None:
    if ex.req_done:
        up.pool.release(up)
    else:  # the upstream answered before the whole body was sent: the connection is spent
        up.abort()
        ex.close_after = True


def upgrade(ex: Exchange, up: UpstreamConnection, buf: bytes, offset: int) -> None:
    """The upstream switched protocols: both connections become a raw tunnel."""
    if up.status != 101 or ex.upgrade is None:
        broken(ex, up, "the upstream switched protocols unasked")
        return
    head, _, _, upgrade = raw_head(buf[: buf.find(b"\r\n\r\n") + 2])
    if upgrade is None:
        broken(ex, up, "the upstream switched protocols without an Upgrade header")
        return
    ex.status = 101
    conn = ex.conn
    switch = b"Connection: Upgrade\r\nUpgrade: %b\r\n\r\n" % upgrade
    conn.transport.write(b"".join((head, switch, buf[offset:])))
    ex.upstream = None
    endpoint, ex.endpoint = ex.endpoint, None
    conn.start_tunnel(up, endpoint)
    ex.finish()


def cut(ex: Exchange, up: UpstreamConnection, buf: bytes) -> bytes:
    """The upstream sent bytes after its response, in the same read (a response nobody asked
    for, or a body longer than its framing says): ``buf`` up to the response's end, which goes to
    the client as usual; the rest is dropped, and the connection is closed after this exchange,
    since what it would say next is out of step (forwarding it would hand this client, or the
    next exchange, an answer to a request it never made)."""
    end = _message_end(buf)
    up.keep_alive = False
    _warn_overrun(ex, len(buf) - end)
    return buf[:end]


def overrun(ex: Exchange, up: UpstreamConnection) -> None:
    """Like :func:`cut`, in a body piece: where the response ends in the piece is not known here
    (its start went out in earlier reads), so both connections are dropped and the client sees
    its response cut short, as for any upstream failing mid-response."""
    _warn_overrun(ex, -1)
    broken(ex, up, "the upstream sent bytes past the end of its response")


def _warn_overrun(ex: Exchange, dropped: int) -> None:
    endpoint = ex.endpoint
    where = endpoint.label if endpoint is not None else "an upstream"
    size = f"{dropped} bytes" if dropped >= 0 else "bytes"
    log.warning(
        "gateway: %s sent %s after its response to %s %s: dropped, connection closed",
        where,
        size,
        ex.method.decode("latin-1"),
        ex.target.decode("latin-1"),
    )


class _Ends:
    """Parser callbacks that only note when a final response (not an interim 1xx) is complete."""

    __slots__ = ("complete", "parser")

    def __init__(self) -> None:
        self.complete = False
        self.parser = HttpResponseParser(self)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() >= 200:
            self.complete = True

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade):
            if not self.complete:
                raise


def _message_end(buf: bytes) -> int:
    """Where the first final response in ``buf`` ends (``buf`` holds it whole, from its start).

    httptools does not say how many bytes a message took, so a fresh parser is fed ``buf`` a
    piece at a time to find the piece it ends in, then another up to that piece and byte by byte
    within it. Only for an upstream that sent too much: the usual path never comes here."""
    probe = _Ends()
    start = 0
    while not probe.complete:
        if start >= len(buf):
            return len(buf)  # cannot happen: the live parser found the end in ``buf``
        probe.feed(buf[start : start + _PROBE_STEP])
        start += _PROBE_STEP
    start -= _PROBE_STEP
    probe = _Ends()
    probe.feed(buf[:start])
    while not probe.complete:
        probe.feed(buf[start : start + 1])
        start += 1
    return start


def lost(ex: Exchange, up: UpstreamConnection) -> None:
    """The upstream connection closed while this exchange was using it."""
    ex.upstream = None
    if ex.finished:
        return
    if ex.status and ex.until_close:  # a body delimited by the end of the connection
        if ex.chunk_out and not ex.conn.lingering:
            ex.conn.transport.write(LAST_CHUNK)
        ex.finish()
        return
    if ex.status == 0 and ex.replay is not None and not ex.retried:
        ex.retried = True  # a stale keep-alive connection, or a replica that just died
        ex.pending = [*ex.replay]
        ex.pending_size = ex.replay_size
        ex.replay = None
        failed = ex.endpoint
        ex.drop_endpoint()
        ex.pick(failed)
        return
    if ex.status == 0:
        ex.fail(502, "the upstream closed the connection before answering")
    else:
        ex.conn.abort()
        ex.finish()


def broken(ex: Exchange, up: UpstreamConnection, reason: str) -> None:
    ex.upstream = None
    up.abort()
    if ex.status == 0:
        ex.fail(502, reason)
    else:
        ex.conn.abort()
        ex.finish()


__all__ = ["broken", "cut", "data", "done", "head", "lost", "overrun", "upgrade"]
