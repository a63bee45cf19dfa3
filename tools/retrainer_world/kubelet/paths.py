"""Container paths to local paths, and reading back what a container left behind.

The "containers" are local processes, so a path the pod spec names under a volumeMount
(`/var/lib/retrainer/...` in an env value, a command, an argument or workingDir) must be
rewritten to the folder that backs the volume; the termination message file is mapped the
same way. The kubelet's rules for the termination message (4096 bytes; on
FallbackToLogsOnError the last 80 lines / 2048 bytes of the log) live here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = [
    "DEFAULT_TERMINATION_PATH",
    "LOG_TAIL_BYTES",
    "LOG_TAIL_LINES",
    "MESSAGE_BYTES",
    "PathMap",
    "log_tail",
    "read_message",
    "termination_message",
]

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
MESSAGE_BYTES = 4096
LOG_TAIL_LINES = 80
LOG_TAIL_BYTES = 2048
# A container path starts where no path character precedes it (start, space, '=', ':', quote)
# and ends where no name character follows it, so `/data` never matches `/database`.
_BEFORE = r"(?<![\w./-])"
_AFTER = r"(?![\w.-])"


def _norm(path: str) -> str:
    return str(PurePosixPath(path)) if path else path


@dataclass
class PathMap:
    """Ordered container-path -> local-path pairs (longest container path wins)."""

    pairs: list[tuple[str, str]] = field(default_factory=list)

    def add(self, container_path: str, local_path: str | Path) -> None:
        path = _norm(container_path)
        if not path.startswith("/") or path == "/":
            raise ValueError(f"mountPath {container_path!r} must be an absolute path below /")
        self.pairs = [p for p in self.pairs if p[0] != path]
        self.pairs.append((path, str(local_path)))
        self.pairs.sort(key=lambda p: len(p[0]), reverse=True)

    def local(self, path: str) -> str | None:
        """The local path for an absolute container path under a mapping, else None."""
        norm = _norm(path)
        for container, local in self.pairs:
            if norm == container:
                return local
            if norm.startswith(container + "/"):
                return local + norm[len(container) :]
        return None

    def rewrite(self, text: str) -> str:
        """Replace every container path inside `text` (args like `--data=/mnt/x` too)."""
        if not self.pairs or "/" not in text:
            return text
        pattern = _BEFORE + "(" + "|".join(re.escape(c) for c, _ in self.pairs) + ")" + _AFTER
        table = dict(self.pairs)
        return re.sub(pattern, lambda m: table[m.group(1)], text)


def read_message(path: Path, limit: int = MESSAGE_BYTES) -> str:
    """The termination message file's first `limit` bytes ('' when absent)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(limit)
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")


def log_tail(
    path: Path, offset: int = 0, lines: int = LOG_TAIL_LINES, limit: int = LOG_TAIL_BYTES
) -> str:
    """The last `lines` lines, at most `limit` bytes, of the log written after `offset`."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            end = fh.tell()
            start = max(offset, end - limit)
            fh.seek(start)
            data = fh.read(end - start)
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    kept = text.splitlines(keepends=True)[-lines:]
    return "".join(kept)


def termination_message(
    message_file: Path, policy: str, exit_code: int, log_file: Path, log_offset: int
) -> str:
    """What the kubelet puts into `state.terminated.message`."""
    message = read_message(message_file)
    if not message and policy == "FallbackToLogsOnError" and exit_code != 0:
        return log_tail(log_file, log_offset)
    return message
