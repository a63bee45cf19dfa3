"""Which local command a container runs: `command`/`args`, or its image via images.yaml.

Containers here are local processes. With `command` set, command+args run as given (the
executable found on the pod's PATH, whose first entry is the venv's bin dir); without it,
the image name is looked up in images.yaml to stand in for the image's ENTRYPOINT/CMD.
An image that is not listed there behaves like one that cannot be pulled (ErrImagePull).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "IMAGES_FILE",
    "ImageEntry",
    "ImageUnknown",
    "container_argv",
    "image_argv_count",
    "image_candidates",
    "load_images",
    "lookup_image",
    "resolve_executable",
]

IMAGES_FILE = Path(__file__).with_name("images.yaml")
Obj = dict[str, Any]


class ImageUnknown(Exception):
    """No images.yaml entry for an image that a command-less container needs."""


@dataclass(frozen=True)
class ImageEntry:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()


def load_images(path: Path = IMAGES_FILE) -> dict[str, ImageEntry]:
    raw = yaml.safe_load(path.read_text()) or {}
    images = raw.get("images") or {}
    if not isinstance(images, dict):
        raise ValueError(f"{path}: 'images' must be a mapping of image name -> entry")
    out: dict[str, ImageEntry] = {}
    for name, entry in images.items():
        entry = entry or {}
        if not isinstance(entry, dict) or set(entry) - {"entrypoint", "cmd"}:
            raise ValueError(f"{path}: images.{name} may only have 'entrypoint' and 'cmd' lists")
        out[str(name)] = ImageEntry(
            tuple(str(a) for a in entry.get("entrypoint") or ()),
            tuple(str(a) for a in entry.get("cmd") or ()),
        )
    return out


def image_candidates(image: str) -> list[str]:
    """Names to try for `image`: full name, without registry host, last component."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name = name[:colon]
    parts = name.split("/")
    candidates = [name]
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        candidates.append("/".join(parts[1:]))
    if len(parts) > 1:
        candidates.append(parts[-1])
    return list(dict.fromkeys(candidates))


def lookup_image(images: dict[str, ImageEntry], image: str) -> ImageEntry | None:
    for candidate in image_candidates(image):
        if candidate in images:
            return images[candidate]
    return None


def _fill(arg: str, venv: Path, repo: Path) -> str:
    return arg.replace("{venv}", str(venv)).replace("{repo}", str(repo))


def container_argv(
    container: Obj, images: dict[str, ImageEntry], venv: Path, repo: Path
) -> list[str]:
    """The argv a container runs (before path mapping and `$(VAR)` expansion)."""
    command = list(container.get("command") or [])
    args = container.get("args")
    if command:
        return command + list(args or [])
    image = container.get("image", "")
    entry = lookup_image(images, image)
    if entry is None:
        raise ImageUnknown(
            f"image {image!r} is not in {IMAGES_FILE.name} and the container sets no "
            "command: add the image there or set spec.containers[].command"
        )
    tail = list(args) if args is not None else [_fill(a, venv, repo) for a in entry.cmd]
    argv = [_fill(a, venv, repo) for a in entry.entrypoint] + tail
    if not argv:
        raise ImageUnknown(f"image {image!r} has neither entrypoint nor cmd nor args to run")
    return argv


def image_argv_count(container: Obj, images: dict[str, ImageEntry]) -> int:
    """How many leading items of `container_argv` come from images.yaml.

    Those are host paths already ({venv}, {repo}), so they must never be rewritten as container
    paths: a checkout under /tmp would otherwise be mapped into an emptyDir mounted at /tmp.
    """
    if container.get("command"):
        return 0
    entry = lookup_image(images, container.get("image", ""))
    if entry is None:
        return 0
    cmd = entry.cmd if container.get("args") is None else ()
    return len(entry.entrypoint) + len(cmd)


def resolve_executable(argv0: str, path_env: str, cwd: Path) -> str:
    """`argv0` as an absolute executable: as is when it holds a '/', else found on PATH."""
    if "/" in argv0:
        return argv0 if argv0.startswith("/") else str(cwd / argv0)
    found = shutil.which(argv0, path=path_env)
    if found is None:
        raise FileNotFoundError(f'exec: "{argv0}": executable file not found in $PATH')
    return found
