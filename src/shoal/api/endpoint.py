"""Where a running daemon's control API is, and the token it wants.

The daemon writes, beside the manifest in ``.shoal/``: ``api-url`` (its base URL, one line),
``token`` (mode 0600, one line), ``daemon.pid`` (one line) and ``events-url`` (the events
endpoint, ``shoal.api.ingest``: publishes only, same token). The CLI and scripts read them to
reach the daemon; nothing else is needed. Plain files so that ``curl -H "Authorization: Bearer
$(cat .shoal/token)" $(cat .shoal/api-url)/v1/instances`` works.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from shoal.errors import DaemonNotRunning

API_URL = "api-url"
EVENTS_URL = "events-url"
TOKEN = "token"  # noqa: S105 - the file name, not a secret
PID = "daemon.pid"


@dataclass(frozen=True)
class Endpoint:
    """How to reach one daemon."""

    url: str
    token: str
    pid: int | None


def _write(path: Path, text: str, mode: int) -> None:
    """Write atomically (rename) so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, f"{text}\n".encode())
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    tmp.replace(path)


def new_token(state: Path) -> str:
    """A fresh random token in ``state/token`` (0600), replacing any earlier one."""
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    _write(state / TOKEN, token, 0o600)
    return token


def publish(state: Path, url: str, events_url: str | None = None) -> None:
    """Announce the API: write ``events-url``, ``daemon.pid`` and, last, ``api-url`` (after the
    token exists): a client that finds ``api-url`` finds the rest."""
    if events_url is not None:
        _write(state / EVENTS_URL, events_url, 0o644)
    _write(state / PID, str(os.getpid()), 0o644)
    _write(state / API_URL, url, 0o644)


def withdraw(state: Path) -> None:
    """The daemon is going away: remove what :func:`publish` wrote (the token stays)."""
    for name in (API_URL, EVENTS_URL, PID):
        (state / name).unlink(missing_ok=True)


def read_pid(state: Path) -> int | None:
    try:
        return int((state / PID).read_text().strip())
    except (OSError, ValueError):
        return None


def discover(state: Path) -> Endpoint:
    """The endpoint of the daemon whose state is in ``state``; DaemonNotRunning if none."""
    try:
        url = (state / API_URL).read_text().strip()
        token = (state / TOKEN).read_text().strip()
    except FileNotFoundError:
        raise DaemonNotRunning(
            f"no shoal daemon is running for {state.parent} (start one with `shoal up`)"
        ) from None
    except OSError as exc:
        raise DaemonNotRunning(f"cannot read {state}: {exc.strerror}") from exc
    return Endpoint(url=url, token=token, pid=read_pid(state))


__all__ = ["Endpoint", "discover", "new_token", "publish", "read_pid", "withdraw"]
