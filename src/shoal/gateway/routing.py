"""Routing: which service or function a request goes to, and what path it gets (pure code).

    Manifest ──compile_routes──▶ RouteTable ──match(host, method, target)──▶ (Rule, upstream target)
                                                                    └──▶ RouteError(status, message)

The first step of every request in :mod:`shoal.gateway.proxy`; no I/O, no clocks. Bytes in, bytes
out: the request target arrives as httptools hands it over and never becomes a ``str``.

Matching, in this order:

1. The target is split at ``?``; the query is passed on untouched. An absolute-form target
   (``http://host/path``) gives its host and path; any other target must start with ``/``.
2. The path is **normalised before matching** (RFC 3986 §6.2.2): ``%XX`` of unreserved characters
   decoded, other escapes kept with upper-case hex, ``.``/``..`` segments resolved, runs of ``/``
   merged. Refused with 400: an encoded ``/`` (``%2F``), ``\\`` (``%5C``) or NUL, a raw ``\\``,
   a control character, a dot segment spelled with escapes (``%2E%2E``) or carrying parameters
   (``..;``), an overlong UTF-8 escape (``%C0%AE``), a ``..`` above the root, a ``#``, a
   malformed escape. Ordinary paths (no ``%``, ``//``, ``/.``, ``\\``) skip all of it.
3. Host rules first (the ``Host`` header, case-insensitive, port ignored), then rules for any host;
   within each, the **longest prefix on a segment boundary** wins: ``/api`` matches ``/api`` and
   ``/api/x``, never ``/apix``.
4. Function rules carry methods: a path that matches only with other methods answers 405.
5. A path whose dot segments moved it out of the prefix it was written under (``/api/../admin``)
   is refused with 400 rather than served by the other route: no request escapes its route.

Answers are cached, bounded (4096, cleared whole when full): by path inside :meth:`match`, and
by whole request in :attr:`RouteTable.answers`, which the proxy looks up itself before calling.

``strip_prefix`` removes the matched prefix (``/api/items`` -> ``/items``, ``/api`` -> ``/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from shoal.manifest.schema import Manifest

TargetKind = Literal["service", "function"]

# Methods the gateway never forwards: CONNECT opens tunnels, TRACE reflects credentials.
REFUSED_METHODS = frozenset((b"CONNECT", b"TRACE"))
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = b"0123456789ABCDEF"
_FORBIDDEN_ESCAPES = frozenset((0x2F, 0x5C, 0x00))  # '/', '\', NUL
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_CACHE_SIZE = 4096  # matched paths remembered per table (cleared whole when full)


class RouteError(Exception):
    """The request cannot be routed: an HTTP status and a short message for the client."""

    def __init__(self, status: int, message: str, allow: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.allow = allow  # the Allow header of a 405


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """One route: a host (or any) and a path prefix leading to a service or a function."""

    index: int
    """Position in the table: a stable id for metrics."""
    prefix: bytes
    """Normalised path prefix, no trailing slash (``/`` for the root)."""
    kind: TargetKind
    target: str
    """The service or function name."""
    host: bytes | None = None
    """Lower-case host without port, or None for any host."""
    methods: frozenset[bytes] | None = None
    """Methods routed here (function triggers); None for all."""
    strip_prefix: bool = False

    @property
    def label(self) -> str:
        """How metrics and logs name the route: ``/api`` or ``shop.local/api``."""
        host = self.host.decode("ascii", "replace") if self.host else ""
        return host + self.prefix.decode("ascii", "replace")


class RouteTable:
    """Compiled routes; :meth:`match` is the only thing the hot path calls."""

    __slots__ = ("_any", "_by_method", "_cache", "_hosts", "answers", "plain", "rules")

    def __init__(self, rules: list[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self._by_method = any(rule.methods is not None for rule in rules)
        self._cache: dict[tuple[bytes | None, bytes | None, bytes], tuple[Rule, bytes]] = {}
        self.answers: dict[object, tuple[Rule, bytes]] = {}
        """Answers by request, for the hot path to look up itself: keyed by the raw target when
        the table is :attr:`plain`, else by (raw Host, method, raw target). Callers must still
        refuse :data:`REFUSED_METHODS` themselves."""
        self.plain = True
        """Neither host nor method can change an answer (no host rules, no function methods)."""
        self._any: dict[bytes, list[Rule]] = {}
        self._hosts: dict[bytes, dict[bytes, list[Rule]]] = {}
        for rule in rules:
            by_prefix = self._any if rule.host is None else self._hosts.setdefault(rule.host, {})
            by_prefix.setdefault(rule.prefix, []).append(rule)
        for by_prefix in (self._any, *self._hosts.values()):
            for group in by_prefix.values():
                group.sort(key=lambda r: r.methods is None)  # method-specific rules first
        self.plain = not self._hosts and not self._by_method

    def __len__(self) -> int:
        return len(self.rules)

    def match(self, host: bytes | None, method: bytes, target: bytes) -> tuple[Rule, bytes]:
        """The rule for a request and the target to send upstream; RouteError if there is none.

        ``host`` is the raw Host header value (None if absent); ``target`` the raw request target.
        """
        if method in REFUSED_METHODS:
            raise RouteError(405, f"method {method.decode('ascii', 'replace')} is not allowed")
        q = target.find(b"?")
        if q >= 0:
            path, query = target[:q], target[q:]
        else:
            path, query = target, b""
        if path.startswith(b"/"):  # the usual origin-form: answers are cached by path
            key = (host if self._hosts else None, method if self._by_method else None, path)
            hit = self._cache.get(key)
            if hit is None:
                hit = self._match_path(host, method, path)
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.clear()
                self._cache[key] = hit
        else:
            host, path = _absolute_form(path)
            hit = self._match_path(host, method, path)
        rule, forwarded = hit
        answer = (rule, forwarded + query if query else forwarded)
        answers = self.answers
        if len(answers) >= _CACHE_SIZE:
            answers.clear()
        answers[target if self.plain else (host, method, target)] = answer
        return answer

    def _match_path(self, host: bytes | None, method: bytes, path: bytes) -> tuple[Rule, bytes]:
        if (
            b"%" in path
            or b"//" in path
            or b"/." in path
            or b"\\" in path
            or b"#" in path
            or not path.isascii()
        ):
            path, written = _normalise(path)
        else:
            written = None
        if written is None:
            rule = self._find(host, method, path)
        else:  # dot segments were resolved: the route must be the one the path was written under
            try:
                rule = self._find(host, method, path)
            except RouteError:
                rule = _NO_RULE
            lexical = self._lexical(host, method, written)
            if rule is not lexical and lexical is not _NO_RULE:
                raise RouteError(400, "the path leaves the route it was written under")
            if rule is _NO_RULE:
                rule = self._find(host, method, path)  # the 404 or 405 it deserves
        if rule.strip_prefix and rule.prefix != b"/":
            path = path[len(rule.prefix) :] or b"/"
        return rule, path

    def _find(self, host: bytes | None, method: bytes, path: bytes) -> Rule:
        allowed: set[bytes] = set()
        if self._hosts and host:
            by_prefix = self._hosts.get(host_key(host))
            if by_prefix is not None:
                rule = _longest(by_prefix, method, path, allowed)
                if rule is not None:
                    return rule
        rule = _longest(self._any, method, path, allowed)
        if rule is not None:
            return rule
        if allowed:
            allow = ", ".join(sorted(m.decode("ascii") for m in allowed))
            raise RouteError(405, "method not allowed on this route", allow)
        raise RouteError(404, "no route for this path")

    def _lexical(self, host: bytes | None, method: bytes, written: bytes) -> Rule:
        """The rule of the prefix a path was written under (its segments before any dot one)."""
        try:
            return self._find(host, method, written)
        except RouteError:
            return _NO_RULE


def _longest(
    by_prefix: dict[bytes, list[Rule]], method: bytes, path: bytes, allowed: set[bytes]
) -> Rule | None:
    """The rule of the longest prefix of ``path`` (on a ``/`` boundary) that takes ``method``."""
    candidate = path
    while True:
        group = by_prefix.get(candidate)
        if group is not None:
            for rule in group:
                if rule.methods is None or method in rule.methods:
                    return rule
                allowed.update(rule.methods)
        if candidate == b"/":
            return None
        cut = candidate.rfind(b"/")
        candidate = candidate[:cut] if cut > 0 else b"/"


_NO_RULE = Rule(-1, b"", "service", "")


def host_key(host: bytes) -> bytes:
    """``Shop.Local:8000`` -> ``shop.local``; ``[::1]:8000`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[: end + 1] if end > 0 else host
    colon = host.rfind(b":")
    return host[:colon] if colon >= 0 else host


def _absolute_form(target: bytes) -> tuple[bytes, bytes]:
    """``http://host:port/path`` -> (host, path); anything else that lacks a ``/`` is refused."""
    lower = target[:8].lower()
    for scheme in (b"http://", b"https://"):
        if lower.startswith(scheme):
            rest = target[len(scheme) :]
            slash = rest.find(b"/")
            authority, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
            if not authority or b"@" in authority:
                break
            return authority, path
    raise RouteError(400, "the request target must be a path starting with '/'")


def normalise_path(path: bytes) -> bytes:
    """The canonical form of a request path, or RouteError(400) (see the module docstring)."""
    return _normalise(path)[0]


def _normalise(path: bytes) -> tuple[bytes, bytes | None]:
    """(canonical path, the path written before its first dot segment, or None if it has none)."""
    if b"#" in path:
        raise RouteError(400, "a request target may not carry a fragment")
    if b"\\" in path:
        raise RouteError(400, "backslashes are not allowed in paths")
    out: list[bytes] = []
    written: bytes | None = None
    for segment in path.split(b"/"):
        decoded = _decode_segment(segment)
        if b";" in decoded and decoded.split(b";", 1)[0] in (b".", b".."):
            raise RouteError(400, "a dot segment with parameters (e.g. '..;') is not allowed")
        if decoded in (b".", b".."):
            if decoded != segment:
                raise RouteError(400, "dot segments may not be percent-encoded")
            if written is None:
                written = b"/" + b"/".join(out)
            if decoded == b"..":
                if not out:
                    raise RouteError(400, "the path goes above the root")
                out.pop()
            continue
        if decoded:
            out.append(decoded)
    trailing = path.endswith((b"/", b"/.", b"/..")) and bool(out)
    return b"/" + b"/".join(out) + (b"/" if trailing else b""), written


def _decode_segment(segment: bytes) -> bytes:
    """Decode escapes of unreserved characters; keep others with upper-case hex; encode 8-bit."""
    if b"%" not in segment and segment.isascii():
        _check_controls(segment)
        return segment
    if segment.count(b"%") != len(_ESCAPE.findall(segment)):
        raise RouteError(400, "malformed percent-encoding in the path")

    def one(match: re.Match[bytes]) -> bytes:
        value = int(match.group(1), 16)
        if value in _FORBIDDEN_ESCAPES:
            raise RouteError(400, "encoded '/', '\\' or NUL in the path")
        if value in (0xC0, 0xC1):  # only ever the start of an overlong UTF-8 form ("%c0%ae")
            raise RouteError(400, "an overlong UTF-8 sequence in the path")
        if value in _UNRESERVED:
            return bytes((value,))
        return b"%" + _HEX[value >> 4 : (value >> 4) + 1] + _HEX[value & 15 : (value & 15) + 1]

    decoded = _ESCAPE.sub(one, segment)
    _check_controls(decoded)
    if not decoded.isascii():
        decoded = b"".join(b"%%%02X" % byte if byte >= 0x80 else bytes((byte,)) for byte in decoded)
    return decoded


def _check_controls(segment: bytes) -> None:
    if any(byte < 0x21 or byte == 0x7F for byte in segment):
        raise RouteError(400, "control characters or spaces in the path")


def _prefix(path: str) -> bytes:
    """A manifest path as the table keys it: percent-encoded, upper-case hex, no trailing '/'."""
    encoded = quote(path, safe="/!$&'()*+,;=:@-._~").encode("ascii")
    return encoded.rstrip(b"/") or b"/"


def compile_routes(manifest: Manifest) -> RouteTable:
    """Every service route and function HTTP trigger of ``manifest``, ready for matching."""
    rules: list[Rule] = []
    for name, service in manifest.services.items():
        for route in service.routes:
            rules.append(
                Rule(
                    index=len(rules),
                    prefix=_prefix(route.path),
                    kind="service",
                    target=name,
                    host=host_key(route.host.encode("idna")) if route.host else None,
                    strip_prefix=route.strip_prefix,
                )
            )
    for name, function in manifest.functions.items():
        for trigger in function.triggers:
            http = trigger.http
            if http is None:
                continue
            rules.append(
                Rule(
                    index=len(rules),
                    prefix=_prefix(http.path),
                    kind="function",
                    target=name,
                    host=host_key(http.host.encode("idna")) if http.host else None,
                    methods=frozenset(m.encode("ascii") for m in http.method_set()),
                )
            )
    return RouteTable(rules)


__all__ = [
    "REFUSED_METHODS",
    "RouteError",
    "RouteTable",
    "Rule",
    "TargetKind",
    "compile_routes",
    "normalise_path",
]
