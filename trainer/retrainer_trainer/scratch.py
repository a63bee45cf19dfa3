"""Scratch space on a read-only root filesystem.

The training pod's root filesystem is read-only (the restricted default); the trainer writes
only to the claim and to its scratch emptyDir (RETRAINER_WORKDIR). Libraries also write
elsewhere: Python's tempfile to /tmp, matplotlib and Ultralytics to their config folders,
torch and fontconfig under $HOME. Each such place that is not writable is pointed into the
workdir before those libraries are imported; a writable one (a laptop, the test world) is left
as it is, so their caches keep working there.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["SCRATCH_VARIABLES", "redirect"]

# Variable -> subfolder of the workdir it gets when its own place is not writable.
SCRATCH_VARIABLES = {
    "TMPDIR": "tmp",
    "HOME": "home",
    "MPLCONFIGDIR": "matplotlib",
    "YOLO_CONFIG_DIR": "ultralytics-config",
}
_DEFAULTS = {"TMPDIR": "/tmp", "HOME": str(Path.home())}


def _writable(path: str) -> bool:
    """True when `path` can be written, or created inside a writable parent."""
    target = Path(path)
    while not target.exists():
        if target.parent == target:
            return False
        target = target.parent
    return os.access(target, os.W_OK)


def redirect(workdir: Path) -> dict[str, str]:
    """Point every scratch variable whose place is not writable into `workdir`; returns them."""
    moved: dict[str, str] = {}
    for variable, folder in SCRATCH_VARIABLES.items():
        current = os.environ.get(variable) or _DEFAULTS.get(variable, "")
        if current and _writable(current):
            continue
        path = workdir / folder
        path.mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(path)
        moved[variable] = str(path)
    if "TMPDIR" in moved:
        tempfile.tempdir = None  # tempfile caches its choice: make it read TMPDIR again
    return moved
