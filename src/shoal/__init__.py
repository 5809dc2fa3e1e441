"""shoal: one manifest for a team's microservices, run anywhere from one laptop to Kubernetes.

The package is laid out like the architecture (DESIGN.md §4): ``manifest`` at the bottom, the
``store`` and the backends above it, the control-plane parts above those, and the ``cli`` on top.
"""

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

__all__ = ["__version__"]
