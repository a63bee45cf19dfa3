"""The pipeline's dataset step: from the resolved inputs to the working tree Ultralytics reads.

The dataset's sha256 is known once its files are (fetch.py hashed them while streaming, a
claim folder was read once), so the working tree for that content and those corrections is
looked up before anything is validated: the next version on unchanged data reuses it as it
is. Only a new tree is validated, corrected, counted, and linked (worktree.py).
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retrainer_contract import layout

from retrainer_trainer import (
    corrections,
    datacache,
    dataset,
    evaluate,
    fetch,
    holdout,
    inputs,
    logs,
    regression,
    store,
    worktree,
)
from retrainer_trainer.config import Config
from retrainer_trainer.datacache import Cache

__all__ = ["Prepared", "prepare_cached", "prepare_data"]


class Prepared:
    """The working dataset and what is known about it before training."""

    def __init__(
        self,
        data_yaml: Path,
        metadata: dict[str, Any],
        applied: dict[str, Any],
        shas: set[str] | None = None,
        tree: str = "",
        reused: bool = False,
        pinned: holdout.Holdout | None = None,
        sets: tuple[regression.Loaded, ...] = (),
    ) -> None:
        self.data_yaml = data_yaml
        self.metadata = metadata
        self.applied = applied
        self.shas = shas or set()  # the blobs this run uses (never evicted by it)
        self.tree = tree  # the working tree's name under the cache's trees/
        self.reused = reused  # the tree was there already (nothing linked this run)
        self.holdout = pinned  # spec.promotion's pinned holdout, checked and copied
        self.regression = sets  # its regression sets, copied or each with why it could not be


def _populate(
    folder: Path,
    resolved: inputs.Inputs,
    cache: Cache,
    corrections_sha: str,
    pinned: holdout.Holdout | None,
) -> dict[str, Any]:
    """Validate, link and correct the dataset into `folder`; the tree's marker content."""
    tally: dict[str, list[str | None]] = {}
    linked: list[str] = []
    with worktree.view(resolved.dataset, cache, full=False) as root:
        found = dataset.load(root)
        dataset.make_working_copy(found, folder, resolved.dataset.files, tally, linked)
    written = [layout.DATA_YAML]
    applied: list[corrections.Correction] = []
    if resolved.corrections is not None:
        with worktree.view(resolved.corrections, cache) as source:
            if pinned is not None:  # before anything is merged: `folder` is the dataset's
                holdout.check_corrections(source, folder, pinned)
            applied = corrections.apply(source, folder, found.names, written)
        dataset.validate_working_copy(folder, found.names)
    return {
        # What the tree holds, as linked (corrections add and remove files: then it is read).
        **({"linked": linked} if resolved.corrections is None else {}),
        "names": list(found.names),
        "counts": (
            dataset.counts(folder, found.names)  # corrections changed labels: count them again
            if resolved.corrections is not None
            else dataset.tally_counts(tally, found.names)
        ),
        "applied": corrections.applied_document(applied, corrections_sha),
        "written": written,
    }


def _holdout(
    config: Config, resolved: inputs.Inputs, cache: Cache
) -> tuple[holdout.Holdout | None, tuple[regression.Loaded, ...]]:
    """Under spec.promotion: the holdout checked against the dataset's classes and copied to
    the workdir (small by design), the policy checked against it, and the regression sets."""
    if resolved.holdout is None or config.spec.promotion is None:
        return None, ()
    with worktree.view(resolved.dataset, cache, full=False) as root:
        names = dataset.load(root).names
    with worktree.view(resolved.holdout, cache) as root:
        pinned = holdout.load(root, names, config.workdir / "holdout")
    evaluate.check_policy(config.spec.promotion, pinned)
    return pinned, regression.load(config, cache, names)


def prepare_data(config: Config, resolved: inputs.Inputs, cache: Cache) -> Prepared:
    """The working tree (reused or built), and the two dataset documents in the workdir."""
    started = time.monotonic()
    dataset_sha = worktree.tree_sha256(resolved.dataset.files)
    corrections_sha = (
        worktree.tree_sha256(resolved.corrections.files) if resolved.corrections else ""
    )
    pinned, sets = _holdout(config, resolved, cache)
    # The holdout's hash is part of the key: a new holdout checks the corrections against it.
    key = worktree.tree_key(dataset_sha, corrections_sha + (pinned.sha256 if pinned else ""))
    sources = [resolved.dataset, *([resolved.corrections] if resolved.corrections else [])]
    # Held until this process ends: eviction and other trainers leave the tree alone.
    name, marker = worktree.open_tree(cache, key, sources)
    reused = marker is not None
    if marker is None:
        marker = worktree.build(
            cache, name, lambda folder: _populate(folder, resolved, cache, corrections_sha, pinned)
        )
    applied_doc: dict[str, Any] = marker["applied"]
    counted: dict[str, Any] = marker["counts"]
    metadata = {
        "datasetUri": config.spec.dataset_uri,
        "datasetSha256": dataset_sha,
        "correctionsUri": config.spec.corrections_uri or "",
        "correctionsSha256": corrections_sha,
        "correctionsApplied": applied_doc["count"],
        "names": list(marker["names"]),
        "splits": counted,
    }
    store.atomic_write_json(config.workdir / layout.DATASET_METADATA, metadata)
    store.atomic_write_json(config.workdir / layout.CORRECTIONS_APPLIED, applied_doc)
    tree = cache.trees / name
    logs.event(
        "dataset.ready",
        train=counted["train"]["samples"],
        val=counted["val"]["samples"],
        corrections=applied_doc["count"],
        sha256=dataset_sha,
        tree=str(tree),
        reused=reused,
        seconds=round(time.monotonic() - started, 3),
    )
    if resolved.holdout is not None:
        sources.append(resolved.holdout)
    shas = {f.sha256 for s in sources for f in s.files.values()}
    return Prepared(
        tree / layout.DATA_YAML, metadata, applied_doc, shas, name, reused, pinned, sets
    )


def prepare_cached(
    config: Config, cache: Cache, resolve: Callable[[], inputs.Inputs]
) -> tuple[inputs.Inputs, Prepared, datacache.Evicted]:
    """Resolve the inputs and prepare the working tree through the claim's dataset cache, then
    bring the cache back under its cap.

    The blobs this run uses are leased before cache.lock is let go, so no trainer's eviction
    (this one's included) can come between the tree being ready and the lease: a tree of
    symlinks keeps reading them until the last epoch.
    """
    with datacache.locked(cache.lock(), fcntl.LOCK_SH):
        resolved = resolve()
        prep = prepare_data(config, resolved, cache)
        cache.lease(prep.shas)  # until this process ends
        for source in (resolved.dataset, resolved.corrections):
            if source is not None:
                fetch.remember(cache, source, prep.reused)
    return resolved, prep, cache.evict(keep=prep.shas, keep_trees={prep.tree})
