"""`retrainer retain MODEL N... --root DIR`: remove old versions' claim copies, and say so.

The operator decides what retention removes (spec.retention, status.retention.removable) and
runs this in a Job of the operator image with the claim mounted read-write; a person can run it
on a mounted claim too. It removes exactly the paths the contract names for each version
(retrainer_contract.upkeep.retention_paths: the production copy, the quick-access copy and the
run folder), never the metadata file and never anything in MLflow, prints each path it
removed, and writes the contract's compact report as the termination message.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from retrainer_contract import env as trainer_env
from retrainer_contract import layout, upkeep

from retrainer_cli import kube

__all__ = ["add_parser", "remove_versions", "run"]


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


def add_parser(subparsers: Any) -> None:
    """Register `retain` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "retain",
        help="remove the claim copies of old versions (what spec.retention decided)",
        description=(
            "Remove the production copy, the quick-access copy and the run folder of each "
            "VERSION of MODEL under --root. The metadata file stays; MLflow is not touched. "
            "Exit 0 when every copy is gone, 1 when one could not be removed."
        ),
    )
    parser.add_argument("model", help="the model line")
    parser.add_argument("versions", nargs="+", type=int, metavar="VERSION")
    parser.add_argument(
        "--root",
        default=os.environ.get(trainer_env.STORAGE_ROOT),
        help=f"claim root holding <model>/models (default: ${trainer_env.STORAGE_ROOT})",
    )
    parser.add_argument(
        "--termination-message-path",
        default=os.environ.get(trainer_env.TERMINATION_MESSAGE_PATH),
        help=argparse.SUPPRESS,
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Remove, print each removed path, write the report; the exit code says if all went."""
    if not args.root:
        raise kube.CliError("--root is required: the folder where the claim is mounted")
    if any(v < 1 for v in args.versions):
        raise kube.CliError("versions are 1 or more")
    root = Path(args.root)
    if not (root / args.model).is_dir():
        raise kube.CliError(f"no model line {args.model!r} under --root {root}", exit_code=1)
    gone, removed, failed = remove_versions(root, args.model, sorted(set(args.versions)))
    for path in removed:
        print(f"removed {path}")
    for failure in failed:
        print(f"FAILED {failure['path']}: {failure['error']}")
    print(f"{args.model}: claim copies of {len(gone)} versions gone, {len(removed)} paths removed")
    if args.termination_message_path:
        report = upkeep.retain_report(args.model, gone, removed, failed)
        with contextlib.suppress(OSError):
            Path(args.termination_message_path).write_text(report, encoding="utf-8")
    return 1 if failed else 0
