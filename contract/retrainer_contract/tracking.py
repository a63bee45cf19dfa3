"""MLflow as both sides see it: run tags, names, the experiment default and the run lookup.

The trainer tags the run of version N with the RetrainJob's uid and the version; the operator
finds that run again with the same filter to read progress and the manifest. One filter, one
quoting rule, so a uid or a name with a quote cannot make the two disagree.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CHALLENGER_ALIAS",
    "CONTEXT_CORRECTIONS",
    "CONTEXT_EVALUATION",
    "CONTEXT_TRAINING",
    "DECISION_NONE",
    "EXPERIMENT_KIND_TRAINING",
    "MANIFEST_ARTIFACT",
    "MODEL_TRAINING_VIEW",
    "TAG_BASE",
    "TAG_CHAMPION",
    "TAG_DATASET_CONTEXT",
    "TAG_DECISION",
    "TAG_EXPERIMENT_KIND",
    "TAG_MODEL",
    "TAG_NAMESPACE",
    "TAG_RETRAINJOB",
    "TAG_SHA256",
    "TAG_SHA_PREFIX",
    "TAG_UID",
    "TAG_VERIFIED",
    "TAG_VERSION",
    "UPLOADS_ARTIFACT",
    "allocated_in",
    "allocated_tag",
    "champion_tag_value",
    "dataset_digest",
    "experiment_name",
    "experiment_tags",
    "experiment_url",
    "model_filter",
    "parse_champion_tag",
    "quote",
    "run_filter",
    "run_name",
    "run_tags",
    "run_url",
    "sha_tag",
    "version_filter",
]

TAG_UID = "retrainer.uid"
TAG_MODEL = "retrainer.model"
TAG_VERSION = "retrainer.version"
TAG_BASE = "retrainer.baseModel"
# A model line is per namespace, an experiment may be shared by several namespaces.
TAG_NAMESPACE = "retrainer.namespace"
# Set by the operator on the run of a version whose every copy it verified: the production
# copy's sha256. With TAG_CHAMPION, what rebuilds a lost ModelLine's verified versions.
TAG_VERIFIED = "retrainer.verified"
# Set on the run of each version when it becomes champion: "<since, microseconds> <reason>".
# The newest one names the champion when the ModelLine (the record) is lost; the others, in
# order, its history. A tag per run, so writers of different moves never overwrite each other.
TAG_CHAMPION = "retrainer.champion"
# `retrainer.sha256/<artifact path>`: the sha256 of what was uploaded there (a rerun skips it).
TAG_SHA_PREFIX = "retrainer.sha256/"


def allocated_tag(namespace: str, model: str, version: int | None = None) -> str:
    """The experiment tag recording that `version` of `namespace`/`model` was handed out
    (without `version`: the line's prefix, and the single tag older operators wrote). MLflow
    keeps it when the ModelLine (the sequence) is deleted, and it counts even for versions that
    never trained (their RetrainJob and Job gone too).

    One tag per version, because MLflow has no compare-and-set: two writers of one tag could
    leave the lower number last. A writer removes only tags below its own, so the highest
    number handed out always keeps its tag (`allocated_in` reads the maximum)."""
    line = f"retrainer.allocated/{namespace}/{model}"
    return line if version is None else f"{line}/{version}"


def allocated_in(tags: Mapping[str, str], namespace: str, model: str) -> dict[str, int]:
    """Every allocated-version tag of the line among an experiment's tags: key -> version."""
    line = allocated_tag(namespace, model)
    found: dict[str, int] = {}
    for key, value in tags.items():
        if (key == line or key.startswith(f"{line}/")) and str(value).isdigit():
            found[key] = int(value)
    return found


# The manifest's artifact path at the root of the run.
MANIFEST_ARTIFACT = "manifest.json"


def experiment_name(spec: Mapping[str, Any]) -> str:
    """spec.mlflow.experiment, defaulting to the model line's name."""
    return str((spec.get("mlflow") or {}).get("experiment") or spec["model"])


def run_name(model: str, version: int) -> str:
    return f"{model}-v{version}"


def run_tags(uid: str, namespace: str, model: str, version: int, base: str) -> dict[str, str]:
    """The tags that identify the run of version N and the RetrainJob that owns it."""
    return {
        TAG_UID: uid,
        TAG_NAMESPACE: namespace,
        TAG_MODEL: model,
        TAG_VERSION: str(version),
        TAG_BASE: base,
    }


def sha_tag(artifact_path: str) -> str:
    return f"{TAG_SHA_PREFIX}{artifact_path}"


def quote(value: str) -> str:
    """`value` as a single-quoted MLflow search literal (its quotes escaped)."""
    escaped = value.replace("'", "\\'")
    return f"'{escaped}'"


def run_filter(uid: str, version: int) -> str:
    """The search filter for the run of version `version` owned by RetrainJob `uid`."""
    return f"tags.`{TAG_UID}` = {quote(uid)} and tags.`{TAG_VERSION}` = {quote(str(version))}"


def model_filter(namespace: str, model: str) -> str:
    """The search filter for every run of a model line (to recover its version numbers)."""
    return f"tags.`{TAG_NAMESPACE}` = {quote(namespace)} and tags.`{TAG_MODEL}` = {quote(model)}"


def version_filter(namespace: str, model: str, version: int) -> str:
    """The search filter for the run of version `version` of a model line, whoever owns it."""
    return f"{model_filter(namespace, model)} and tags.`{TAG_VERSION}` = {quote(str(version))}"


# MLflow 3's UI opens in its GenAI view unless the link asks for the model-training one (the
# experiment's mlflow.experimentKind tag does not choose it): every link Retrainer prints asks.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def experiment_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's runs in the MLflow UI's model-training view ("" without a web server)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return ""
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}?{MODEL_TRAINING_VIEW}"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI's model-training view ("" without a web server)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return ""
    base = f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{base}?{MODEL_TRAINING_VIEW}"


def champion_tag_value(reason: str, since: str | None = None) -> str:
    """The TAG_CHAMPION value of a move for `reason` at `since` (default now: sortable UTC with
    microseconds, so the newest of several moves in one second still sorts last)."""
    if since is None:
        since = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{since} {reason}"


def parse_champion_tag(value: str) -> tuple[str, str] | None:
    """(since, reason) of a TAG_CHAMPION value, or None when it is not one."""
    since, _, reason = value.strip().partition(" ")
    if not since or not reason or not since[:4].isdigit():
        return None
    return since, reason


# ---- a version as a first-class MLflow model ---------------------------------------------------

# The experiment tag MLflow 3's UI reads to choose an experiment's view, and its value for the
# model-training view (runs, metrics, logged models; not the GenAI one). Set on the experiments
# Retrainer creates, by the trainer and the operator alike.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"


def experiment_tags() -> dict[str, str]:
    """The tags of an experiment Retrainer creates: it opens in MLflow's model-training view."""
    return {TAG_EXPERIMENT_KIND: EXPERIMENT_KIND_TRAINING}


# The run's record of what it uploaded: {"artifacts": {<artifact path>: {"sha256", "bytes"}}}, at
# the root of the run. A rerun skips an upload whose bytes the record names. It replaces the
# per-artifact TAG_SHA_PREFIX run tags, which only runs of older trainers carry (still read).
UPLOADS_ARTIFACT = "uploads.json"

# MLflow's input tag naming a dataset's role in a run, and Retrainer's three roles: the
# training dataset (spec.dataset), the corrections (spec.corrections), the pinned holdout
# (spec.promotion.holdout).
TAG_DATASET_CONTEXT = "mlflow.data.context"
CONTEXT_TRAINING = "training"
CONTEXT_CORRECTIONS = "corrections"
CONTEXT_EVALUATION = "evaluation"
# MLflow stores at most 36 characters of a dataset digest: the sha256's first 32 hex digits.
DATASET_DIGEST_CHARS = 32


def dataset_digest(sha256: str) -> str:
    """An MLflow dataset digest of a Retrainer sha256 (its prefix: the full one is in the
    dataset's profile, the lineage and the evaluation)."""
    return sha256[:DATASET_DIGEST_CHARS]


# On a version's logged model and its registered model version: the production copy's sha256
# (the weights), the RetrainJob that trained it (its name; TAG_NAMESPACE beside it), and on the
# registered version the holdout evaluation's decision (DECISION_NONE without spec.promotion).
TAG_SHA256 = "retrainer.sha256"
TAG_RETRAINJOB = "retrainer.retrainJob"
TAG_DECISION = "retrainer.decision"
DECISION_NONE = "none"
# The registered-model alias naming the latest version evaluated on the holdout, whatever the
# decision (the champion's alias is the operator's: champion.DEFAULT_ALIAS or spec's).
CHALLENGER_ALIAS = "challenger"
