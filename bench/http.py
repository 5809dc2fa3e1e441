"""The leanest HTTP/1.1 client a benchmark can have: blocking sockets, no parsing library.

Figures measured "through the gateway" should be the gateway's cost, not the client's, so this
client does the minimum: one ``sendall`` of a prebuilt request and ``recv`` until the headers and
a ``Content-Length`` body are in. It keeps the connection alive (``Connection`` omitted) or opens
a new one per request, as the caller chooses. Responses must carry Content-Length (the gateway's
function responses do).
"""

from __future__ import annotations

import socket


def request_bytes(method: str, path: str, body: bytes = b"", host: str = "bench") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one response on ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-body")
        body += chunk
    return status, body


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now, for a server the benchmark starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def exchange(sock: socket.socket, request: bytes) -> tuple[int, bytes]:
    sock.sendall(request)
    return read_response(sock)


def once(port: int, request: bytes) -> tuple[int, bytes]:
    """One request on a new connection (closed after)."""
    with connect(port) as sock:
        return exchange(sock, request)


__all__ = ["connect", "exchange", "free_port", "once", "read_response", "request_bytes"]
