"""Loading a function's handler in its template: the init phase, with Lambda's error types.

``python -m shoal.functions.template`` calls :func:`load_handler` once per template. The file is
compiled from its source (not loaded from ``__pycache__``: a handler rewritten within the same
second at the same size would pass the bytecode cache's mtime check with the old code) and run
as a module named after the file, as Lambda imports ``file.function``. What can go wrong is
reported as Lambda's Python runtime reports it: ``Runtime.ImportModuleError`` ("Unable to
import module 'x': ..."), ``Runtime.UserCodeSyntaxError``, ``Runtime.HandlerNotFound``
("Handler 'f' missing on module 'x'"), or the error shape of whatever the module raised.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from shoal.functions.context import error_shape

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any


def load_handler(
    path: str, function: str
) -> tuple[ModuleType | None, Callable[..., Any] | None, dict[str, Any] | None]:
    """Import the handler's file and find the function: (module, handler, None), or the error
    in Lambda's shape with Lambda's error types."""
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem not in sys.modules else f"_shoal_handler_{stem}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None:
            raise ImportError(f"No module named '{stem}'")
        module = importlib.util.module_from_spec(spec)
        # Compiled from the source, not loaded from __pycache__: a file rewritten within the
        # same second at the same size passes the cache's mtime check with the old code.
        with open(path, "rb") as source:
            code = compile(source.read(), path, "exec", dont_inherit=True)
        sys.modules[name] = module
        exec(code, module.__dict__)  # noqa: S102 (what importing does, minus the cache)
    except FileNotFoundError:
        return None, None, _import_error(stem, f"No module named '{stem}'")
    except ImportError as exc:
        return None, None, _import_error(stem, str(exc))
    except SyntaxError as exc:
        message = f"Syntax error in module '{stem}': {exc}"
        return None, None, {"errorMessage": message, "errorType": "Runtime.UserCodeSyntaxError"}
    except Exception as exc:
        return None, None, error_shape(exc, skip_files=(__file__,))
    handler = getattr(module, function, None)
    if not callable(handler):
        message = f"Handler '{function}' missing on module '{stem}'"
        return module, None, {"errorMessage": message, "errorType": "Runtime.HandlerNotFound"}
    return module, handler, None


def _import_error(stem: str, reason: str) -> dict[str, Any]:
    message = f"Unable to import module '{stem}': {reason}"
    return {"errorMessage": message, "errorType": "Runtime.ImportModuleError"}


__all__ = ["load_handler"]
