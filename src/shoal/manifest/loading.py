"""Loading a manifest: find the file, read it, interpolate, validate, cross-check.

The flow, each step collecting problems rather than stopping at the first:

    find_manifest -> reading.read_yaml -> interpolating.interpolate -> schema.Manifest
                  -> checking.check -> profiles -> Project, or ManifestError listing every problem

Every problem is reported once, with file, line, column, the dotted path, what is wrong and a
hint (STYLE.md habit 6). Nothing but :class:`~shoal.errors.ManifestError` and
:class:`~shoal.errors.ManifestNotFound` escapes :func:`load_manifest`.
"""

from __future__ import annotations

import hashlib
import json
import os
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import pydantic
from pydantic_core import ErrorDetails

from shoal.errors import ManifestError, ManifestNotFound, Problem
from shoal.manifest import profiles as profiling
from shoal.manifest.checking import DiskFiles, Files, check, suggest
from shoal.manifest.interpolating import interpolate, parse_dotenv
from shoal.manifest.reading import Document, Path, read_yaml
from shoal.manifest.schema import Manifest

MANIFEST_NAMES = ("shoal.yaml", "shoal.yml")
MAX_BYTES = 4 << 20


@dataclass(frozen=True)
class Project:
    """A loaded, valid manifest and where it lives."""

    manifest: Manifest  # only the services of the active profiles
    file: FsPath  # the manifest file, absolute
    root: FsPath  # its folder: relative paths in the manifest start here
    profiles: frozenset[str] = frozenset()  # the active profiles
    left_out: tuple[str, ...] = ()  # services of inactive profiles

    @property
    def digest(self) -> str:
        """A hash of the manifest's meaning (not its formatting): same app, same digest."""
        canonical = json.dumps(self.manifest.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def resolve(self, relative: str) -> FsPath:
        return (self.root / relative).resolve()


def find_manifest(file: str | os.PathLike[str] | None = None, cwd: FsPath | None = None) -> FsPath:
    """The manifest named by ``-f``, else ``./shoal.yaml``, else ``./shoal.yml``."""
    here = cwd or FsPath.cwd()
    if file is not None:
        path = here / file
        if path.is_dir():
            return find_manifest(None, path)
        if not path.is_file():
            raise ManifestNotFound(f"{file}: no such file")
        return path
    for name in MANIFEST_NAMES:
        if (here / name).is_file():
            return here / name
    raise ManifestNotFound(
        f"no shoal.yaml or shoal.yml in {here}: pass -f FILE, or run `shoal init` to start one"
    )


def load_manifest(
    file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: FsPath | None = None,
    profiles: Collection[str] | None = None,
) -> Project:
    """Find, read and validate a manifest; raise ManifestError with every problem found.

    ``profiles`` are the active profiles (``"*"``: all); None reads ``SHOAL_PROFILES`` from the
    environment (or ``.env``). The whole file is validated whatever the profiles."""
    here = cwd or FsPath.cwd()
    path = find_manifest(file, here)
    shown = os.path.relpath(path, here)
    if shown.startswith(".."):
        shown = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestNotFound(f"{shown}: cannot read: {exc.strerror}") from exc
    if len(raw) > MAX_BYTES:
        raise ManifestError([Problem(shown, 0, 0, "", f"the file is over {MAX_BYTES >> 20} MiB")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            [Problem(shown, 0, 0, "", f"not UTF-8 text (byte {exc.start})", "save it as UTF-8")]
        ) from exc
    root = path.parent.resolve()
    env, problems = _environment(root, environ if environ is not None else os.environ)
    active = frozenset(profiles) if profiles is not None else profiling.active_profiles(env)
    manifest = parse_manifest(text, shown, env, DiskFiles(root), problems, profiles=active)
    return Project(
        manifest=profiling.select(manifest, active),
        file=path.resolve(),
        root=root,
        profiles=active,
        left_out=tuple(profiling.inactive(manifest, active)),
    )


def _environment(root: FsPath, environ: Mapping[str, str]) -> tuple[dict[str, str], list[Problem]]:
    """``.env`` beside the manifest, overridden by the process environment (as Compose does)."""
    dotenv = root / ".env"
    values: dict[str, str] = {}
    problems: list[Problem] = []
    if dotenv.is_file():
        try:
            text = dotenv.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(dotenv), 0, 0, "", f"cannot read: {exc}"))
            text = ""
        values, bad = parse_dotenv(text)
        problems += [Problem(".env", p.line, 1, "", p.message) for p in bad]
    return {**values, **environ}, problems


def parse_manifest(
    text: str,
    file: str,
    env: Mapping[str, str],
    files: Files,
    problems: list[Problem] | None = None,
    *,
    profiles: Collection[str] | None = None,
) -> Manifest:
    """Validate manifest text; ``file`` is only used to label problems. With ``profiles``, an
    active service may not depend on one those profiles leave out. The result is the whole
    manifest: :func:`shoal.manifest.profiles.select` trims it."""
    problems = list(problems or [])
    doc = read_yaml(text)
    problems += [
        Problem(file, m.line, m.column, _dotted(p), msg, hint) for m, p, msg, hint in doc.problems
    ]
    if doc.data is None and not doc.problems:
        problems.append(Problem(file, 0, 0, "", "the file is empty", "start with `name: myapp`"))
    if doc.data is not None and not isinstance(doc.data, dict):
        problems.append(
            Problem(file, 1, 1, "", f"expected a mapping of settings, got {_kind(doc.data)}")
        )
    if problems:
        raise ManifestError(problems)
    data = {k: v for k, v in doc.data.items() if not str(k).startswith("x-")}  # Compose extensions
    data, bad_vars = interpolate(data, env)
    for item in bad_vars:
        mark = doc.locate(item.path)
        problems.append(
            Problem(file, mark.line, mark.column, _dotted(item.path), item.message, item.hint)
        )
    try:
        manifest = Manifest.model_validate(data)
    except pydantic.ValidationError as exc:
        problems += [_translate(err, doc, file) for err in exc.errors(include_url=False)]
        raise ManifestError(problems) from None
    for finding in check(manifest, files):
        if finding.file is not None:
            problems.append(
                Problem(
                    finding.file, finding.line, finding.column, "", finding.message, finding.hint
                )
            )
            continue
        mark = doc.locate(finding.path, key=finding.at_key)
        problems.append(
            Problem(
                file, mark.line, mark.column, _dotted(finding.path), finding.message, finding.hint
            )
        )
    for name, target, hint in (
        profiling.problems(manifest, profiles) if profiles is not None else ()
    ):
        here: Path = ("services", name, "depends_on", target)
        mark = doc.locate(here, key=True)
        message = f"depends on {target!r}, which the active profiles leave out"
        problems.append(Problem(file, mark.line, mark.column, _dotted(here), message, hint))
    if problems:
        raise ManifestError(problems)
    return manifest


# ---------------------------------------------------------------- pydantic errors, made readable


def _translate(err: ErrorDetails, doc: Document, file: str) -> Problem:
    loc: Path = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    hint = ""
    at_key = False
    if loc and loc[-1] == "[key]":  # a bad dict key: point at the key itself
        loc, at_key = (*loc[:-2], str(value)), True
    if kind == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        message = f"unknown key {loc[-1]!r}"
        hint = suggest(str(loc[-1]), allowed) or (
            f"allowed here: {', '.join(sorted(allowed))}" if allowed else ""
        )
        at_key = True
    elif kind == "missing":
        message = f"{loc[-1]!r} is required"
        mark = doc.locate(loc[:-1])
        return Problem(file, mark.line, mark.column, _dotted(loc[:-1]), message, "")
    elif kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", err["msg"]))
    elif kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        message = f"{value!r} is not one of {expected}"
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",")]
        hint = suggest(str(value), choices)
    else:
        message = _plain_message(kind, value, ctx, err["msg"])
    mark = doc.locate(loc, key=at_key)
    return Problem(file, mark.line, mark.column, _dotted(loc), message, hint)


def _plain_message(kind: str, value: Any, ctx: Mapping[str, Any], fallback: str) -> str:
    shown = repr(value) if not isinstance(value, dict | list) else _kind(value)
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{shown} is not a whole number"
    if kind in ("float_parsing", "float_type"):
        return f"{shown} is not a number"
    if kind in ("bool_parsing", "bool_type"):
        return f"{shown} is not true or false"
    if kind == "string_type":
        return f"expected text, got {_kind(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping (key: value), got {_kind(value)}"
    if kind == "list_type":
        return f"expected a list, got {_kind(value)}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {
            "greater_than": "must be greater than",
            "greater_than_equal": "must be at least",
            "less_than": "must be less than",
            "less_than_equal": "must be at most",
        }
        bound = next(iter(ctx.values()), "?")
        return f"{shown} {words[kind]} {bound}"
    if kind in ("finite_number",):
        return f"{shown} is not a finite number"
    return f"{fallback} (got {shown})"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"text ({value!r})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    return type(value).__name__


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _fields_at(loc: Path) -> list[str]:
    """Names of the keys allowed at ``loc``, by walking the schema's type annotations."""
    current: Any = Manifest
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the interesting type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


__all__ = ["MANIFEST_NAMES", "Project", "find_manifest", "load_manifest", "parse_manifest"]
