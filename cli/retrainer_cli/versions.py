"""`retrainer versions`: every version of each model line, from the durable record.

A RetrainJob can be deleted (by hand, by a ModelLine's history limit) while its version's
weights and MLflow run stay; the line's ModelLine keeps the sequence (status.verifiedVersions
lists every verified version, status.versions the newest ones with their RetrainJob). So the
rows are the union: each RetrainJob that still exists, plus a row for each version only the
ModelLine remembers ("deleted" in the PHASE column). One table per (namespace, model), newest
version last: "which version is verified and how good is it" is one command.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterable
from typing import Any

from retrainer_contract import metrics as metric_keys
from retrainer_contract import status as vocabulary
from retrainer_contract import versions as contract_versions

from retrainer_cli import kube, table

__all__ = ["HEADERS", "add_parser", "group_versions", "render_versions", "run"]

# The metric columns are headed by their keys (mAP50_95 shown as mAP50-95, as Ultralytics does).
HEADERS = (
    "VERSION",
    "NAME",
    "PHASE",
    metric_keys.MAP50,
    metric_keys.MAP50_95.replace("_", "-"),
    "VERIFIED",
    "AGE",
)


def _row(item: dict[str, Any], now: dt.datetime) -> list[str]:
    status = item.get("status") or {}
    metrics = status.get("metrics") or {}
    version = status.get("version")
    return [
        str(version) if isinstance(version, int) else table.NONE,
        item.get("metadata", {}).get("name", ""),
        str(status.get("phase") or vocabulary.PENDING),
        table.format_metric(metrics.get(metric_keys.MAP50)),
        table.format_metric(metrics.get(metric_keys.MAP50_95)),
        vocabulary.condition_status(status, vocabulary.VERIFIED) or table.NONE,
        table.format_age(item.get("metadata", {}).get("creationTimestamp"), now),
    ]


def _sort_key(item: dict[str, Any]) -> tuple[int, int, str]:
    # Versions in order; RetrainJobs without a version yet (just created) go last by age.
    version = (item.get("status") or {}).get("version")
    meta = item.get("metadata", {})
    if isinstance(version, int):
        return (0, version, "")
    return (1, 0, str(meta.get("creationTimestamp", "")) + meta.get("name", ""))


# The PHASE of a version whose RetrainJob is gone (its weights and MLflow run are not).
DELETED = "Deleted"


def _remembered(line: dict[str, Any]) -> list[dict[str, Any]]:
    """Stand-in rows (RetrainJob-shaped) for every version a ModelLine records."""
    meta, status = line.get("metadata") or {}, line.get("status") or {}
    verified = set(contract_versions.expand_ranges(str(status.get("verifiedVersions") or "")))
    listed = {int(v["version"]): v for v in status.get("versions") or [] if "version" in v}
    rows = []
    for number in sorted(verified | set(listed)):
        entry = listed.get(number, {})
        ok = number in verified or entry.get("state") == vocabulary.VERSION_VERIFIED
        condition = vocabulary.TRUE if ok else vocabulary.UNKNOWN
        rows.append(
            {
                "metadata": {
                    "name": str(entry.get("retrainJob") or table.NONE),
                    "namespace": meta.get("namespace", ""),
                },
                "spec": {"model": meta.get("name", "")},
                "status": {
                    "version": number,
                    "phase": DELETED,
                    "conditions": [{"type": vocabulary.VERIFIED, "status": condition}],
                },
            }
        )
    return rows


def merge_durable(
    retrainjobs: Iterable[dict[str, Any]], lines: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The RetrainJobs, plus a row for each version a ModelLine records whose RetrainJob is
    gone."""
    items = list(retrainjobs)
    present = {
        (
            (item.get("metadata") or {}).get("namespace", ""),
            (item.get("spec") or {}).get("model", ""),
            (item.get("status") or {}).get("version"),
        )
        for item in items
    }
    for line in lines:
        for row in _remembered(line):
            key = (
                row["metadata"]["namespace"],
                row["spec"]["model"],
                row["status"]["version"],
            )
            if key not in present:
                items.append(row)
    return items


def group_versions(
    items: Iterable[dict[str, Any]], model: str | None = None
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """RetrainJobs per (namespace, model), sorted by version; only `model` when given."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in items:
        line = str((item.get("spec") or {}).get("model", ""))
        if model is not None and line != model:
            continue
        namespace = str(item.get("metadata", {}).get("namespace", ""))
        groups.setdefault((namespace, line), []).append(item)
    return {key: sorted(groups[key], key=_sort_key) for key in sorted(groups)}


def render_versions(
    items: Iterable[dict[str, Any]],
    model: str | None = None,
    now: dt.datetime | None = None,
    show_namespace: bool = False,
) -> str:
    """One titled table per model line; an explanatory line when there is nothing to show."""
    now = now or dt.datetime.now(dt.UTC)
    groups = group_versions(items, model)
    if not groups:
        what = f"model {model!r}" if model else "any model"
        return f"No RetrainJobs found for {what}."
    blocks = []
    for (namespace, line), group in groups.items():
        title = f"MODEL {line}" + (f" (namespace {namespace})" if show_namespace else "")
        rendered = table.render_table(HEADERS, (_row(item, now) for item in group))
        blocks.append(f"{title}\n{rendered}")
    return "\n\n".join(blocks)


def add_parser(subparsers: Any) -> None:
    """Register `versions` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "versions",
        help="list the versions of each model line",
        description=(
            "List model versions (one table per model line) from the RetrainJobs and the "
            "ModelLines, which remember versions whose RetrainJob was deleted."
        ),
    )
    parser.add_argument("model", nargs="?", help="only this model line (spec.model)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's)")
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="look in every namespace"
    )
    parser.add_argument("--context", help="kubeconfig context to use")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the tables; 0 even when empty (an empty history is not an error)."""
    api = kube.api_client(args.context)
    namespace = None if args.all_namespaces else args.namespace
    if namespace is None and not args.all_namespaces:
        namespace = kube.current_namespace(args.context)
    items = merge_durable(
        kube.list_retrainjobs(api, namespace), kube.list_modellines(api, namespace)
    )
    print(render_versions(items, args.model, show_namespace=args.all_namespaces))
    return 0
