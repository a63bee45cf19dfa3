"""The trainer's termination message: the manifest (or the failure) Kubernetes keeps in the pod.

The documents' shapes are the contract's (retrainer_contract.documents); this module only
writes the compact form where the pod's termination log is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from retrainer_contract import documents

__all__ = ["write_termination"]


def write_termination(path: Path | None, document: Mapping[str, Any]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        compact = documents.compact(document)
        path.write_text(json.dumps(compact, separators=(",", ":")), encoding="utf-8")
    except OSError:
        pass  # no termination log (a local run): the stdout events say the same
