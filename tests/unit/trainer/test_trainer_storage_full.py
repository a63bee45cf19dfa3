"""A full claim is reported as StorageFull (exit 3, with the fix), never as a crash."""

from __future__ import annotations

import errno
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
from retrainer_contract import exits
from retrainer_trainer import errors

Usage = namedtuple("Usage", "total used free")


def test_an_enospc_anywhere_in_the_chain_is_a_full_claim(tmp_path: Path) -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as cause:
            raise RuntimeError("PytorchStreamWriter failed writing file") from cause
    except RuntimeError as error:
        full = errors.storage_full(error, tmp_path)
    assert full is not None and full.exit_code == exits.BAD_INPUT
    assert full.reason == "StorageFull" and str(tmp_path) in str(full)
    assert "grow it" in str(full)


def test_a_write_error_on_a_claim_without_space_is_a_full_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault point: the claim reports no free bytes (torch hides the errno).
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10, 10, 0))
    assert errors.storage_full(RuntimeError("file write failed"), tmp_path) is not None


def test_other_errors_with_space_left_stay_what_they_were(tmp_path: Path) -> None:
    assert errors.storage_full(RuntimeError("CUDA out of memory"), tmp_path) is None
    assert errors.storage_full(OSError(errno.EIO, "I/O error"), tmp_path) is None
