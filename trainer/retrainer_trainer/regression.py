"""Regression sets: the extra pinned sets a new version must not forget (spec.promotion).

Which sets: spec.promotion.regressionSets, then the holdouts the champion was judged on before
(its metadata file's evaluation: its holdout and the previous holdouts it inherited), so a
changed holdout.uri never drops the old one silently. They are read before training, in the
dataset step, and copied into the work dir like the holdout (small by design). A set that
cannot be read is not an error of the RetrainJob: the version still trains, and the decision
is Rejected/RegressionSetUnavailable with why (gates.py), never a skip. Only read while the
line has a champion: without one there is nothing to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrainer_contract import documents, gates, layout

from retrainer_trainer import holdout, inputs, logs, worktree
from retrainer_trainer.config import Config
from retrainer_trainer.datacache import Cache
from retrainer_trainer.errors import TrainerError

__all__ = ["Loaded", "load", "wanted"]

# An unreadable set's reason is kept in status.evaluation: bounded.
MAX_ERROR = 600


@dataclass(frozen=True)
class Loaded:
    """A regression set, copied and checked (holdout), or why it could not be (error)."""

    set: gates.RegressionSet
    field: str
    copy: holdout.Holdout | None
    error: str = ""


def _champion_evaluation(config: Config) -> dict[str, Any]:
    """The champion's own evaluation document ({}: none readable; evaluate.champion refuses a
    champion whose metadata file is missing or broken, with the reason, before training)."""
    if config.champion_version is None:
        return {}
    paths = layout.VersionPaths.for_version(
        config.storage_root, config.spec.model, config.champion_version
    )
    try:
        doc = documents.read_json(paths.metadata).get("evaluation")
    except (OSError, ValueError, AttributeError):
        return {}
    return dict(doc) if isinstance(doc, dict) else {}


def wanted(config: Config) -> tuple[tuple[gates.RegressionSet, str], ...]:
    """The sets version N is judged on, each with the field that names it in errors."""
    policy = config.spec.promotion
    if policy is None or config.champion_version is None:
        return ()
    inherited = gates.inherited_sets(
        _champion_evaluation(config), policy.previous_holdout_tolerance
    )
    index = {s.uri: i for i, s in enumerate(policy.regression_sets)}
    return tuple(
        (
            s,
            f"spec.promotion.regressionSets[{index[s.uri]}].uri"
            if s.origin == gates.ORIGIN_SPEC
            else f"previous holdout {s.uri} (spec.promotion.keepPreviousHoldouts)",
        )
        for s in policy.effective_sets(inherited)
    )


def load(config: Config, cache: Cache, names: tuple[str, ...]) -> tuple[Loaded, ...]:
    """Read every wanted set into the work dir; a set that cannot be read carries its error."""
    out = []
    for i, (spec_set, field) in enumerate(wanted(config)):
        work = config.workdir / "regression" / str(i)
        try:
            out.append(
                Loaded(spec_set, field, _read(config, cache, spec_set.uri, field, names, work))
            )
        except TrainerError as error:
            text = str(error)
            if len(text) > MAX_ERROR:
                text = text[: MAX_ERROR - 3] + "..."
            logs.event("regression_set.unavailable", name=spec_set.name, uri=spec_set.uri)
            out.append(Loaded(spec_set, field, None, text))
    return tuple(out)


def _read(
    config: Config, cache: Cache, uri: str, field: str, names: tuple[str, ...], work: Path
) -> holdout.Holdout:
    source = inputs.folder(config, cache, uri, field)
    with worktree.view(source, cache) as root:
        return holdout.load(root, names, work, field)
