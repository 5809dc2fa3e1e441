"""Images: content tags (pure), builds that are not repeated for an unchanged folder, build
failures with their output, and the busybox test image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shoal.errors import ImageError
from shoal.runtimes.container import build_image, content_hash, list_images
from shoal.runtimes.container.images import base_images, default_repository

pytestmark = pytest.mark.timeout(120)


def folder(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    root = tmp_path / "svc"
    root.mkdir(exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_content_hash_follows_content_not_times(tmp_path: Path) -> None:
    root = folder(tmp_path, "FROM scratch\n", **{"a.txt": "one", "notes.md": "x"})
    first = content_hash(root)
    (root / "a.txt").write_text("one")  # rewritten, same bytes
    assert content_hash(root) == first
    (root / "a.txt").write_text("two")
    assert content_hash(root) != first
    (root / "a.txt").write_text("one")
    (root / ".dockerignore").write_text("*.md\n")
    ignored = content_hash(root)
    (root / "notes.md").write_text("changed")
    assert content_hash(root) == ignored  # an ignored file is not part of the context
    (root / "a.txt").chmod(0o755)
    assert content_hash(root) != ignored  # modes count
    assert content_hash(root, lambda image: "sha256:1") == content_hash(
        root, lambda image: "sha256:1"
    )


def test_base_images_and_repository_names(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM --platform=linux/amd64 shoal/python:bookworm AS build\n"
        "FROM build\nFROM scratch\nfrom alpine:3\n"
    )
    assert base_images(dockerfile) == ["shoal/python:bookworm", "alpine:3"]
    assert default_repository(tmp_path / "My Service!") == "shoal/my-service"


def test_unchanged_folder_is_not_rebuilt_and_a_change_is(
    tmp_path: Path, busybox: str, engine: Any
) -> None:
    root = folder(tmp_path, f"FROM {busybox}\nCOPY page.txt /www/page.txt\n", **{"page.txt": "v1"})
    repository = f"shoal/test-build-{tmp_path.name.lower()}"
    lines: list[str] = []
    tags: list[str] = []
    try:
        tags.append(build_image(root, lines.append, repository=repository, client=engine))
        assert any("Successfully built" in line for line in lines), lines
        lines.clear()
        assert build_image(root, lines.append, repository=repository, client=engine) == tags[0]
        assert lines == [f"{tags[0]}: up to date (its folder is unchanged)"]
        (root / "page.txt").write_text("v2")
        tags.append(build_image(root, repository=repository, client=engine))
        assert tags[1] != tags[0] and tags[1].startswith(f"{repository}:")
        assert {tags[0], tags[1]} <= {row.tag for row in list_images(engine)}
    finally:
        for tag in tags:
            engine.api.remove_image(tag, force=True)


def test_a_failing_build_says_why_with_its_output(
    tmp_path: Path, busybox: str, engine: Any
) -> None:
    root = folder(tmp_path, f"FROM {busybox}\nRUN echo about to fail && false\n")
    with pytest.raises(ImageError) as info:
        build_image(root, repository="shoal/test-failing", client=engine)
    assert "the build failed" in str(info.value)
    assert "about to fail" in info.value.log
    with pytest.raises(ImageError, match="no Dockerfile"):
        build_image(tmp_path / "nowhere", client=engine)
