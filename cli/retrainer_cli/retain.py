"""`retrainer retain MODEL VERSIONS... --root DIR`: remove old versions' claim copies, and say so.

The operator decides what retention removes (spec.retention, status.retention.removable) and
runs this in a Job of the operator image with the claim mounted read-write; a person can run it
on a mounted claim too. It removes exactly the paths the contract names for each version
(retrainer_contract.upkeep.retention_paths: the production copy, the quick-access copy and the
run folder), never the metadata file and never anything in MLflow, prints each path it
removed, and writes the contract's compact report as the termination message.

The champion can move between the operator's listing and this removal (a promotion or a
rollback while the Job waits for a node). With `--namespace` (the operator always passes it)
the ModelLine's status.champion is read again right before the first removal, and the
champion's and its previous version's copies are never removed, whatever the listing said;
they come back in the report as `protected`. If the line cannot be read, nothing is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from retrainer_contract import env as trainer_env
from retrainer_contract import layout, upkeep, versions

from retrainer_cli import kube

__all__ = ["add_parser", "champion_versions", "remove_versions", "run", "version_ranges"]


def _remove(path: Path) -> bool:
    """Remove a file or a folder; False when it was not there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
        return True
    if path.exists() or path.is_symlink():
        path.unlink()
        return True
    return False


def remove_versions(
    root: Path, model: str, versions: list[int]
) -> tuple[list[int], list[str], list[dict[str, str]]]:
    """Remove the retention paths of each version: (versions gone, paths removed, failures)."""
    gone: list[int] = []
    removed: list[str] = []
    failed: list[dict[str, str]] = []
    for version in versions:
        paths = layout.VersionPaths.for_version(root, model, version)
        ok = True
        for path in upkeep.retention_paths(paths):
            try:
                if _remove(path):
                    removed.append(paths.relative(path))
            except OSError as error:
                ok = False
                failed.append({"path": paths.relative(path), "error": str(error)[:200]})
        if ok:
            gone.append(version)
    return gone, removed, failed


_RANGE = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")


def version_ranges(text: str) -> list[int]:
    """One VERSIONS argument: a number or ranges ("1-40,42"), as the operator writes them
    (a line of 10,000 versions would not fit a command line one number at a time)."""
    for part in text.split(","):
        match = _RANGE.match(part.strip())
        if match is None or int(match.group(2) or match.group(1)) < int(match.group(1)):
            raise argparse.ArgumentTypeError(f"not a version or ranges of versions: {text!r}")
    return versions.expand_ranges(text)


def champion_versions(line: Mapping[str, Any]) -> set[int]:
    """The versions a ModelLine's status.champion needs: the champion and its previous."""
    champion = (line.get("status") or {}).get("champion") or {}
    return {int(v) for v in (champion.get("version"), champion.get("previous")) if v is not None}


def _read_champion(context: str | None, namespace: str, model: str) -> set[int]:
    """The line's champion and previous, read from the cluster now."""
    return champion_versions(kube.get_modelline(kube.api_client(context), namespace, model))


def _listed(model: str, versions: list[int]) -> None:
    """Named point between the listing (the versions this run was asked to remove) and the
    champion's re-read: a test moves the champion here. Does nothing otherwise."""


def add_parser(subparsers: Any) -> None:
    """Register `retain` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "retain",
        help="remove the claim copies of old versions (what spec.retention decided)",
        description=(
            "Remove the production copy, the quick-access copy and the run folder of each "
            "VERSION of MODEL under --root. The metadata file stays; MLflow is not touched. "
            "With --namespace, the champion and its previous version are re-read from the "
            "ModelLine first and never removed. "
            "Exit 0 when every copy is gone, 1 when one could not be removed."
        ),
    )
    parser.add_argument("model", help="the model line")
    parser.add_argument(
        "versions",
        nargs="+",
        type=version_ranges,
        metavar="VERSIONS",
        help="versions to remove: numbers or ranges such as 1-40,42",
    )
    parser.add_argument(
        "--root",
        default=os.environ.get(trainer_env.STORAGE_ROOT),
        help=f"claim root holding <model>/models (default: ${trainer_env.STORAGE_ROOT})",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        help="namespace of the ModelLine whose champion (and previous) must be kept",
    )
    parser.add_argument("--context", help="kubeconfig context to use")
    parser.add_argument(
        "--termination-message-path",
        default=os.environ.get(trainer_env.TERMINATION_MESSAGE_PATH),
        help=argparse.SUPPRESS,
    )
    parser.set_defaults(func=run)


def _protected(args: argparse.Namespace) -> set[int] | str:
    """The versions the champion needs now (none without --namespace), or why they are not
    known (then nothing may be removed)."""
    if not args.namespace:
        return set()
    try:
        return _read_champion(args.context, args.namespace, args.model)
    except Exception as error:  # CliError, ApiException, connection errors: all unknown
        return f"could not re-read the champion of {args.namespace}/{args.model}: {error}"


def _report(args: argparse.Namespace, *parts: Any) -> None:
    """Write the contract's report to the termination message, if there is one."""
    if args.termination_message_path:
        report = upkeep.retain_report(args.model, *parts)
        with contextlib.suppress(OSError):
            Path(args.termination_message_path).write_text(report, encoding="utf-8")


def _print(
    model: str, gone: Iterable[int], removed: list[str], failed: list[dict[str, str]]
) -> None:
    """One line per removed path and per failure, then the count."""
    for path in removed:
        print(f"removed {path}")
    for failure in failed:
        print(f"FAILED {failure['path']}: {failure['error']}")
    print(f"{model}: claim copies of {len(list(gone))} versions gone, {len(removed)} paths removed")


def run(args: argparse.Namespace) -> int:
    """Re-read the champion, remove, print each removed path, write the report; the exit code
    says if all went."""
    if not args.root:
        raise kube.CliError("--root is required: the folder where the claim is mounted")
    asked = sorted({v for group in args.versions for v in group})
    if any(v < 1 for v in asked):
        raise kube.CliError("versions are 1 or more")
    root = Path(args.root)
    if not (root / args.model).is_dir():
        raise kube.CliError(f"no model line {args.model!r} under --root {root}", exit_code=1)
    _listed(args.model, asked)
    protected = _protected(args)
    if isinstance(protected, str):
        print(f"FAILED: {protected}; nothing removed")
        _report(args, [], [], [{"path": args.model, "error": protected[:200]}])
        return 1
    kept = [v for v in asked if v in protected]
    for version in kept:
        print(f"kept v{version}: the champion or its previous version")
    gone, removed, failed = remove_versions(root, args.model, [v for v in asked if v not in kept])
    _print(args.model, gone, removed, failed)
    _report(args, gone, removed, failed, kept)
    return 1 if failed else 0
