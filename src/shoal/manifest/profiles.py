"""Profiles: which services of a manifest run (as Compose's ``profiles:``), decided purely.

A service with ``profiles: [containers]`` runs only while the ``containers`` profile is active;
a service with no profiles always runs. The active set comes from ``shoal up --profile NAME``
(repeatable) or ``SHOAL_PROFILES=a,b`` (the CLI sets the variable, so a detached daemon and its
``apply`` reloads see the same set); ``*`` activates every profile. The whole manifest is always
validated; :func:`select` then drops the inactive services, and :func:`problems` refuses an active
service that depends on an inactive one (it could never start).

    load_manifest -> parse -> check (everything) -> profiles.problems -> profiles.select
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from shoal.manifest.schema import Manifest

ENV_VAR = "SHOAL_PROFILES"
EVERY = "*"


def active_profiles(environ: Mapping[str, str]) -> frozenset[str]:
    """The profiles ``SHOAL_PROFILES`` names (comma- or space-separated)."""
    raw = environ.get(ENV_VAR, "")
    return frozenset(p for p in raw.replace(",", " ").split() if p)


def is_active(profiles: Collection[str], active: Collection[str]) -> bool:
    return not profiles or EVERY in active or any(p in active for p in profiles)


def problems(manifest: Manifest, active: Collection[str]) -> list[tuple[str, str, str]]:
    """``(service, dependency, hint)`` for each active service depending on an inactive one."""
    out = []
    for name, service in manifest.services.items():
        if not is_active(service.profiles, active):
            continue
        for target in service.depends_on:
            other = manifest.services.get(target)
            if other is not None and not is_active(other.profiles, active):
                wanted = " or ".join(f"--profile {p}" for p in other.profiles)
                out.append((name, target, f"activate it with {wanted}"))
    return out


def select(manifest: Manifest, active: Collection[str]) -> Manifest:
    """The manifest with only the services whose profiles are active."""
    kept = {n: s for n, s in manifest.services.items() if is_active(s.profiles, active)}
    if len(kept) == len(manifest.services):
        return manifest
    return manifest.model_copy(update={"services": kept})


def inactive(manifest: Manifest, active: Collection[str]) -> list[str]:
    """Names of the services the active profiles leave out."""
    return [n for n, s in manifest.services.items() if not is_active(s.profiles, active)]


__all__ = ["ENV_VAR", "EVERY", "active_profiles", "inactive", "is_active", "problems", "select"]
