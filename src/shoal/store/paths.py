"""Where the state of one application lives on disk: the ``.shoal`` folder beside its manifest.

``shoal.yaml`` in ``/srv/shop`` keeps its state in ``/srv/shop/.shoal/state.db``; the control
token and other per-application files share the same folder. Pure path arithmetic, no I/O: the
store creates the folder (mode 0700) when it opens the database.
"""

from __future__ import annotations

from pathlib import Path

STATE_DIR_NAME = ".shoal"
DB_FILE_NAME = "state.db"


def state_dir(manifest_path: Path) -> Path:
    """The ``.shoal`` folder beside ``manifest_path`` (the manifest file, not its folder)."""
    return manifest_path.parent / STATE_DIR_NAME


def default_db_path(manifest_path: Path) -> Path:
    """The state database of the application described by ``manifest_path``."""
    return state_dir(manifest_path) / DB_FILE_NAME


__all__ = ["DB_FILE_NAME", "STATE_DIR_NAME", "default_db_path", "state_dir"]
