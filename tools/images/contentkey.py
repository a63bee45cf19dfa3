"""The content key of an image: what must change for a rebuilt image to differ.

sha256 over the Dockerfile, its .dockerignore, every file its COPY instructions take from the
build context (not from other stages) and the build arguments; `make images` reuses an image
whose key matches instead of building it again. Standard library only: it runs before the
venv exists.
    python3 tools/images/contentkey.py operator/Dockerfile KEY=VALUE ...
"""

from __future__ import annotations

import hashlib
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def copied_sources(dockerfile: str) -> list[str]:
    """The context paths of every COPY/ADD without --from (continuations joined)."""
    joined = dockerfile.replace("\\\n", " ")
    sources: list[str] = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True) if line.strip() else []
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def context_files(source: str) -> list[Path]:
    path = ROOT / source
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return sorted(p for p in ROOT.glob(source) if p.is_file())


def content_key(dockerfile: Path, build_args: list[str]) -> str:
    digest = hashlib.sha256()
    text = dockerfile.read_text()
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    for part in (text, ignore.read_text() if ignore.exists() else "", *sorted(build_args)):
        digest.update(part.encode() + b"\0")
    for source in copied_sources(text):
        for file in context_files(source):
            digest.update(str(file.relative_to(ROOT)).encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    print(content_key(ROOT / sys.argv[1], sys.argv[2:]))
