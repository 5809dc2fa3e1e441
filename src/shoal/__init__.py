"""shoal: one manifest for a team's microservices, run anywhere from one laptop to Kubernetes.

The package is laid out like the architecture (DESIGN.md §4): ``manifest`` at the bottom, the
``store`` and the backends above it, the control-plane parts above those, and the ``cli`` on top.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shoal")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
