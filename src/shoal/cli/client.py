"""Reaching the daemon of the manifest named by ``-f`` (or found in the current folder)."""

from __future__ import annotations

from pathlib import Path

from shoal.api.client import Client
from shoal.manifest import find_manifest
from shoal.store import state_dir


def state_for(file: str | None) -> Path:
    """The ``.shoal`` folder beside the manifest (the manifest need not be valid)."""
    return state_dir(find_manifest(file))


def client_for(file: str | None, timeout: float | None = 30.0) -> Client:
    return Client.for_state(state_for(file), timeout)


__all__ = ["client_for", "state_for"]
