"""`retrainer verify`: re-check every stored copy of a model version from a claim folder.

The trainer and operator verify a version when it is made; this is for later ("is v7 still
intact on the volume and in MinIO?"), run by a person or a verify Job (verify_job.py) that
mounts the claim. The checks themselves are in verify_checks.py; this module is the command:
arguments, the table, the verdict (exit code) and the termination message. Its defaults come
from the same environment names the trainer reads (retrainer_contract.env).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from retrainer_contract import env as trainer_env
from retrainer_contract import layout

from retrainer_cli import kube, table, verify_all, verify_job
from retrainer_cli.verify_checks import VerifyRow, latest_version, remote_settings, verify_version

__all__ = ["add_parser", "as_json", "render_rows", "run", "summary"]

# The keys of the MinIO credentials Secret, as the operator's Jobs read them.
_SECRET_KEYS = f"{trainer_env.SECRET_ACCESS_KEY_FIELD}/{trainer_env.SECRET_SECRET_KEY_FIELD}"


def _result(ok: bool | None) -> str:
    return {True: "ok", False: "FAILED", None: "skipped"}[ok]


def render_rows(rows: list[VerifyRow], root: Path | None = None) -> str:
    """The verify table; locations are shown relative to `root` when under it."""

    def where(location: str) -> str:
        if root is not None and location.startswith(str(root) + os.sep):
            return location[len(str(root)) + 1 :]
        return location or table.NONE

    cells = [
        [
            r.name,
            _result(r.ok),
            table.short_sha(r.sha256) if r.sha256 else "",
            table.format_size(r.size) if r.size is not None else "",
            where(r.location),
            r.message,
        ]
        for r in rows
    ]
    return table.render_table(("CHECK", "RESULT", "SHA256", "SIZE", "LOCATION", "MESSAGE"), cells)


def summary(rows: list[VerifyRow], model: str, version: int) -> str:
    """One closing line: verified, or how many checks failed."""
    failed = [r for r in rows if r.ok is False]
    skipped = [r for r in rows if r.ok is None]
    if failed:
        names = ", ".join(r.name for r in failed)
        return f"FAILED: {model} v{version}: {len(failed)} of {len(rows)} checks failed ({names})"
    note = f" ({len(skipped)} not checked)" if skipped else ""
    return f"OK: {model} v{version} verified: {len(rows) - len(skipped)} checks passed{note}"


def as_json(rows: list[VerifyRow], model: str, version: int) -> str:
    """Machine-readable result: {model, version, verified, checks[]}."""
    return json.dumps(
        {
            "model": model,
            "version": version,
            "verified": not any(r.ok is False for r in rows),
            "checks": [r.as_check() for r in rows],
        },
        indent=2,
    )


def _write_termination_message(path: str, text: str) -> None:
    # The kubelet keeps at most 4096 bytes; keep the tail, where the summary is.
    data = text.encode("utf-8")[-4000:]
    with contextlib.suppress(OSError):  # best effort: the log still has the table
        Path(path).write_bytes(data)


def add_parser(subparsers: Any) -> None:
    """Register `verify` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "verify",
        help="check every stored copy of a model version (claim folder + MinIO)",
        description=(
            "Check the four locations of a model version "
            f"({', '.join(a for a in layout.ARTIFACT_NAMES if a != layout.MLFLOW)}), "
            "their sha256 against each other and the manifest, and the "
            "MLflow artifact in MinIO. Exit 0 when all pass, 1 on any failure."
        ),
    )
    parser.add_argument("model", help="the model line (spec.model)")
    parser.add_argument(
        "version", nargs="?", type=int, help="version N (default: the latest on the claim)"
    )
    parser.add_argument(
        "--root",
        default=os.environ.get(trainer_env.STORAGE_ROOT),
        help=f"claim root holding <model>/models (default: ${trainer_env.STORAGE_ROOT})",
    )
    parser.add_argument(
        "--s3-endpoint", help=f"MinIO endpoint (default: ${trainer_env.S3_ENDPOINT})"
    )
    parser.add_argument(
        "--no-remote", action="store_true", help="do not check the MLflow artifact in MinIO"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="check every version on the claim; report one line per copy that fails (a scrub)",
    )
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.add_argument(
        "--termination-message-path",
        default=os.environ.get(trainer_env.TERMINATION_MESSAGE_PATH),
        help=argparse.SUPPRESS,
    )
    cluster = parser.add_argument_group("in-cluster mode (a verify Job that mounts the claim)")
    cluster.add_argument("--in-cluster", action="store_true", help="run the check in a Job")
    cluster.add_argument("-n", "--namespace", help="namespace of the claim")
    cluster.add_argument(
        "--claim",
        default=os.environ.get(trainer_env.CLAIM_NAME, trainer_env.DEFAULT_CLAIM_NAME),
        help=f"PersistentVolumeClaim to mount (default: {trainer_env.DEFAULT_CLAIM_NAME})",
    )
    cluster.add_argument(
        "--image", default="ghcr.io/retrainer/operator:0.1.0", help="image with `retrainer`"
    )
    cluster.add_argument(
        "--s3-secret",
        default="minio-credentials",
        help=f"Secret with {_SECRET_KEYS} for MinIO (default: minio-credentials)",
    )
    cluster.add_argument("--timeout", type=int, default=600, help="seconds to wait for the Job")
    cluster.add_argument("--context", help="kubeconfig context to use")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify locally (or in a Job with --in-cluster); the exit code is the verdict."""
    if args.all and args.version is not None:
        raise kube.CliError("--all checks every version: give no VERSION with it")
    if args.in_cluster:
        return verify_job.run(args)
    if not args.root:
        raise kube.CliError("--root is required: the folder where the claim is mounted")
    root = Path(args.root)
    if not (root / args.model).is_dir():
        raise kube.CliError(
            f"no model line {args.model!r} under --root {root} (expected {root / args.model}/)",
            exit_code=1,
        )
    remote = None if args.no_remote else remote_settings(args.s3_endpoint)
    if args.all:
        scrub = verify_all.verify_all(root, args.model, remote)
        print(scrub.text)
        if args.termination_message_path:
            _write_termination_message(args.termination_message_path, scrub.report)
        return 1 if scrub.problems else 0
    version = args.version if args.version is not None else latest_version(root, args.model)
    if version is None:
        raise kube.CliError(
            f"no version of {args.model!r} under {root} (no models/retrained_vN.pt)", exit_code=1
        )
    if version < 1:
        raise kube.CliError(f"version must be 1 or more, got {version}")
    rows = verify_version(root, args.model, version, remote)
    if args.output == "json":
        text = as_json(rows, args.model, version)
    else:
        text = f"{render_rows(rows, root)}\n{summary(rows, args.model, version)}"
    print(text)
    if args.termination_message_path:
        _write_termination_message(args.termination_message_path, text)
    return 1 if any(r.ok is False for r in rows) else 0
