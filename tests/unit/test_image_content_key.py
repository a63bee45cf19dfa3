"""`make images` reuses an image while its content key matches: the key must change with
everything the image is built from, and only with that."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _contentkey() -> ModuleType:
    """tools/images/contentkey.py (a script, not a package), against the real repository."""
    spec = importlib.util.spec_from_file_location("ck", ROOT / "tools/images/contentkey.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def contentkey(tmp_path: Path) -> ModuleType:
    """tools/images/contentkey.py (a script, not a package) against a copy of a small repo."""
    spec = importlib.util.spec_from_file_location("contentkey", ROOT / "tools/images/contentkey.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "app" / "pkg").mkdir(parents=True)
    (tmp_path / "app" / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "app" / "other.txt").write_text("not copied\n")
    (tmp_path / "app" / "Dockerfile").write_text(
        "ARG BASE=python:3.11.14-slim\nFROM ${BASE}\nCOPY app/pkg app/pkg\n"
        "COPY --from=uv /uv /uv\nUSER 1\n"
    )
    module.ROOT = tmp_path
    return module


def test_the_dockerfiles_copy_sources_are_found() -> None:
    text = (ROOT / "trainer" / "Dockerfile").read_text()
    module = _contentkey()
    sources = module.copied_sources(text)
    assert "requirements/trainer.lock" in sources
    assert "trainer/retrainer_trainer" in sources
    assert "/uv" not in sources  # from another stage, not the context


def test_the_key_follows_copied_files_and_build_args_only(
    contentkey: ModuleType, tmp_path: Path
) -> None:
    dockerfile = tmp_path / "app" / "Dockerfile"
    first = contentkey.content_key(dockerfile, ["BASE=a"])
    assert contentkey.content_key(dockerfile, ["BASE=a"]) == first

    (tmp_path / "app" / "other.txt").write_text("changed, but not copied\n")
    (tmp_path / "app" / "pkg" / "__pycache__").mkdir()
    (tmp_path / "app" / "pkg" / "__pycache__" / "code.pyc").write_bytes(b"\0")
    assert contentkey.content_key(dockerfile, ["BASE=a"]) == first

    assert contentkey.content_key(dockerfile, ["BASE=b"]) != first
    (tmp_path / "app" / "pkg" / "code.py").write_text("x = 2\n")
    second = contentkey.content_key(dockerfile, ["BASE=a"])
    assert second != first
    dockerfile.write_text(dockerfile.read_text() + "ENV A=1\n")
    assert contentkey.content_key(dockerfile, ["BASE=a"]) != second


def _build_script_images() -> list[str]:
    """The images `make images` builds when IMAGES is unset (tools/images/build.sh)."""
    text = (ROOT / "tools" / "images" / "build.sh").read_text()
    match = re.search(r'^images="\$\{IMAGES:-([^}]*)\}"$', text, re.MULTILINE)
    assert match, "tools/images/build.sh no longer sets its default IMAGES"
    return match.group(1).split()


def test_make_images_builds_the_bundled_mlflow_image_too() -> None:
    assert _build_script_images() == ["operator", "trainer", "mlflow"]


@pytest.mark.parametrize("name", _build_script_images())
def test_each_image_is_keyed_by_its_own_lock(name: str) -> None:
    # <name>/Dockerfile beside its Dockerfile.dockerignore, as build.sh expects; the key takes
    # the image's lock, so a re-pinned lock rebuilds exactly the images that install it.
    dockerfile = ROOT / name / "Dockerfile"
    assert dockerfile.with_name("Dockerfile.dockerignore").is_file()
    module = _contentkey()
    sources = module.copied_sources(dockerfile.read_text())
    locks = [s for s in sources if s.startswith("requirements/")]
    assert locks == [f"requirements/{name}.lock"]
    assert module.context_files(locks[0]) == [ROOT / locks[0]]
