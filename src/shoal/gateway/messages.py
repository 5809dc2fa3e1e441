"""The bytes the gateway writes itself: status lines, its own small JSON answers, header tables.

Pure and prebuilt at import: the proxy (:mod:`shoal.gateway.proxy`, :mod:`shoal.gateway.exchange`)
looks things up here instead of formatting per request.

- ``STATUS_LINES[code]``: ``b"HTTP/1.1 200 OK\\r\\n"`` for every code 100-599.
- ``REQUEST_HEADERS`` / ``RESPONSE_HEADERS``: lower-case names the proxy treats specially (the
  hop-by-hop ones of RFC 9110 §7.6.1 and those it rewrites), mapped to what to do with them.
- :func:`error_response`: a complete response with a JSON body ``{"message": ...}``.
- :func:`raw_head`: an upstream's response head with its hop-by-hop headers cut out.
"""

from __future__ import annotations

import http
import json
import re

STATUS_LINES: dict[int, bytes] = {}
for _code in range(100, 600):
    try:
        _phrase = http.HTTPStatus(_code).phrase
    except ValueError:
        _phrase = ""
    STATUS_LINES[_code] = f"HTTP/1.1 {_code} {_phrase}".rstrip().encode("ascii") + b"\r\n"

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CLOSE = b"Connection: close\r\n"
KEEP_ALIVE = b"Connection: keep-alive\r\n"

# What the proxy does with a request header, by lower-case name (absent: forward unchanged).
DROP = 1  # hop-by-hop: never forwarded
HOST = 2  # kept, and read for routing and X-Forwarded-Host
CONNECTION = 3  # read for the tokens it names, then dropped
FORWARDED_FOR = 4  # appended to
REQUEST_ID = 5  # kept if sane, else replaced
UPGRADE = 6  # kept only for websockets
CONTENT_LENGTH = 7
TRANSFER_ENCODING = 8
EXPECT = 9  # answered by the gateway itself
REWRITTEN = 10  # X-Forwarded-Proto/-Host: set by the gateway, never trusted from clients

REQUEST_HEADERS: dict[bytes, int] = {
    b"connection": CONNECTION,
    b"keep-alive": DROP,
    b"proxy-connection": DROP,
    b"proxy-authenticate": DROP,
    b"proxy-authorization": DROP,
    b"te": DROP,
    b"trailer": DROP,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"upgrade": UPGRADE,
    b"host": HOST,
    b"x-forwarded-for": FORWARDED_FOR,
    b"x-forwarded-proto": REWRITTEN,
    b"x-forwarded-host": REWRITTEN,
    b"x-request-id": REQUEST_ID,
    b"content-length": CONTENT_LENGTH,
    b"expect": EXPECT,
}

RESPONSE_HEADERS: dict[bytes, int] = {
    b"connection": CONNECTION,
    b"keep-alive": DROP,
    b"proxy-connection": DROP,
    b"proxy-authenticate": DROP,
    b"proxy-authorization": DROP,
    b"te": DROP,
    b"trailer": DROP,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"upgrade": UPGRADE,
    b"content-length": CONTENT_LENGTH,
}

IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"))


def connection_tokens(value: bytes) -> set[bytes]:
    """The lower-case tokens of a Connection header (``close``, ``upgrade``, header names)."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def is_chunked(value: bytes) -> bool:
    """Whether a Transfer-Encoding value is exactly ``chunked`` (the only coding forwarded)."""
    return value.strip().lower() == b"chunked"


_HOP_BY_HOP = re.compile(
    rb"\r\n(connection|keep-alive|proxy-[^:\r]*|te|trailer|transfer-encoding|upgrade):"
    rb"[ \t]*([^\r]*)"
)
_PLAIN_CONNECTION = frozenset((b"close", b"keep-alive", b"upgrade"))


_ANY_HOP_BY_HOP = re.compile(
    rb"\r\n(?:connection|keep-alive|te|trailer|transfer-encoding|upgrade):|\r\nproxy-"
)
_KEEP_ALIVE_LINE = b"\r\nconnection: keep-alive\r\n"


def raw_head(head: bytes) -> tuple[bytes, bool, bool, bytes | None]:
    """A response head as the upstream sent it, hop-by-hop headers cut out, framing read off.

    ``head`` runs from the status line to the CRLF that ends the last header; the same comes
    back (headers can still be appended), with whether it has a Content-Length, whether the
    upstream's body is chunked, and its Upgrade value. The usual case (nothing hop-by-hop but
    ``Connection: keep-alive``) is two searches and a cut.
    """
    low = head.lower()
    cut = low.find(_KEEP_ALIVE_LINE)
    if cut >= 0:
        head = head[:cut] + head[cut + 24 :]
        low = low[:cut] + low[cut + 24 :]
    if _ANY_HOP_BY_HOP.search(low) is None and head.startswith(b"HTTP/1.1 "):
        return head, b"\r\ncontent-length:" in low, False, None
    return _raw_head(head, low)


def _raw_head(head: bytes, low: bytes) -> tuple[bytes, bool, bool, bytes | None]:
    chunked = False
    upgrade: bytes | None = None
    kept: list[bytes] = []
    tokens: set[bytes] | None = None
    at = 0
    for match in _HOP_BY_HOP.finditer(low):
        start, end = match.span()
        kept.append(head[at:start])
        at = end
        name = match.group(1)
        if name == b"connection":
            value = match.group(2).strip()
            if value not in _PLAIN_CONNECTION:
                extra = connection_tokens(value) - _PLAIN_CONNECTION
                tokens = extra if tokens is None else tokens | extra
        elif name == b"transfer-encoding":
            chunked = match.group(2).rstrip().endswith(b"chunked")
        elif name == b"upgrade":
            upgrade = head[start + 10 : end].strip()
    if at:
        kept.append(head[at:])
        head = b"".join(kept)
        if tokens:  # headers a Connection header names are hop-by-hop too
            head = b"\r\n".join(
                line
                for line in head.split(b"\r\n")
                if line.partition(b":")[0].strip().lower() not in tokens
            )
            low = head.lower()
    if not head.startswith(b"HTTP/1.1 "):  # speak for ourselves: always HTTP/1.1
        head = b"HTTP/1.1" + head[head.find(b" ") :]
    return head, b"\r\ncontent-length:" in low, chunked, upgrade


def without_headers(parts: list[bytes], tokens: set[bytes]) -> list[bytes]:
    """``[line, name, ": ", value, "\\r\\n", ...]`` minus the headers named in ``tokens``.

    Headers a Connection header names are hop-by-hop too (RFC 9110 §7.6.1).
    """
    kept = parts[:1]
    for i in range(1, len(parts), 4):
        if parts[i].lower() not in tokens:
            kept += parts[i : i + 4]
    return kept


_ERROR_CACHE: dict[tuple[int, str, bool, int, str], bytes] = {}


def error_response(
    status: int, message: str, *, close: bool = True, retry_after: int = 0, allow: str = ""
) -> bytes:
    """A whole response with ``{"message": ...}`` as its body (cached: errors repeat)."""
    key = (status, message, close, retry_after, allow)
    cached = _ERROR_CACHE.get(key)
    if cached is not None:
        return cached
    body = json.dumps({"message": message}).encode("utf-8") + b"\n"
    head = [
        STATUS_LINES.get(status, STATUS_LINES[500]),
        b"Content-Type: application/json\r\n",
        b"Content-Length: %d\r\n" % len(body),
    ]
    if retry_after:
        head.append(b"Retry-After: %d\r\n" % retry_after)
    if allow:
        head.append(b"Allow: " + allow.encode("ascii") + b"\r\n")
    if close:
        head.append(CLOSE)
    response = b"".join(head) + b"\r\n" + body
    if len(_ERROR_CACHE) < 512:
        _ERROR_CACHE[key] = response
    return response


def sane_request_id(value: bytes) -> bool:
    """A client's X-Request-Id is kept if it is short and plain visible ASCII."""
    return 0 < len(value) <= 200 and value.isascii() and all(0x21 <= b <= 0x7E for b in value)


__all__ = [
    "CHUNKED",
    "CLOSE",
    "CONTINUE",
    "IDEMPOTENT",
    "LAST_CHUNK",
    "REQUEST_HEADERS",
    "RESPONSE_HEADERS",
    "STATUS_LINES",
    "connection_tokens",
    "error_response",
    "is_chunked",
    "raw_head",
    "sane_request_id",
    "without_headers",
]
