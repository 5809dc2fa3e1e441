"""Free ports on 127.0.0.1 for instances: each replica gets its own ``PORT``.

The OS picks a free port (bind to port 0); the allocator remembers what it handed out so two
instances of this daemon never get the same one, even before they bind it.
"""

from __future__ import annotations

import socket


class PortAllocator:
    """Hands out free loopback ports and takes them back."""

    def __init__(self) -> None:
        self._taken: set[int] = set()

    def allocate(self, prefer: int | None = None) -> int:
        """A free port; ``prefer`` (a restarted instance's old port) when it is still free."""
        if prefer is not None and prefer not in self._taken and _is_free(prefer):
            self._taken.add(prefer)
            return prefer
        for _ in range(64):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in self._taken:
                self._taken.add(port)
                return port
        raise OSError("no free port on 127.0.0.1")  # pragma: no cover - the OS has thousands

    def claim(self, port: int) -> None:
        """Mark a port as in use (an adopted instance still holds it)."""
        self._taken.add(port)

    def release(self, port: int | None) -> None:
        if port is not None:
            self._taken.discard(port)


def _is_free(port: int) -> bool:
    """Free to listen on, as servers bind (SO_REUSEADDR): TIME-WAIT leftovers of health probes
    to a crashed instance's port must not make it look taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


__all__ = ["PortAllocator"]
