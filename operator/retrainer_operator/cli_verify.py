"""`retrainer verify`: re-check every stored copy of a model version from a claim folder.

The trainer and operator verify a version when it is made; this is for later ("is v7 still
intact on the volume and in MinIO?"), run by a person or a verify Job (cli_verify_job.py) that
mounts the claim. The checks themselves are in cli_verify_checks.py; this module is the command:
arguments, the table, the verdict (exit code) and the termination message.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from retrainer_operator import cli_table
from retrainer_operator.cli_verify_checks import (
    VerifyRow,
    latest_version,
    remote_settings,
    verify_version,
)

__all__ = ["add_parser", "as_json", "render_rows", "run", "summary"]


def _result(ok: bool | None) -> str:
    return {True: "ok", False: "FAILED", None: "skipped"}[ok]


def render_rows(rows: list[VerifyRow], root: Path | None = None) -> str:
    """The verify table; locations are shown relative to `root` when under it."""

    def where(location: str) -> str:
        if root is not None and location.startswith(str(root) + os.sep):
            return location[len(str(root)) + 1 :]
        return location or cli_table.NONE

    table = [
        [
            r.name,
            _result(r.ok),
            cli_table.short_sha(r.sha256) if r.sha256 else "",
            cli_table.format_size(r.size) if r.size is not None else "",
            where(r.location),
            r.message,
        ]
        for r in rows
    ]
    return cli_table.render_table(
        ("CHECK", "RESULT", "SHA256", "SIZE", "LOCATION", "MESSAGE"), table
    )


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
            "Check the four locations of a model version (production, quickAccess, "
            "trainingRun, metadata), their sha256 against each other and the manifest, and the "
            "MLflow artifact in MinIO. Exit 0 when all pass, 1 on any failure."
        ),
    )
    parser.add_argument("model", help="the model line (spec.model)")
    parser.add_argument(
        "version", nargs="?", type=int, help="version N (default: the latest on the claim)"
    )
    parser.add_argument(
        "--root",
        default=os.environ.get("RETRAINER_STORAGE_ROOT"),
        help="claim root holding <model>/models (default: $RETRAINER_STORAGE_ROOT)",
    )
    parser.add_argument("--s3-endpoint", help="MinIO endpoint (default: $MLFLOW_S3_ENDPOINT_URL)")
    parser.add_argument(
        "--no-remote", action="store_true", help="do not check the MLflow artifact in MinIO"
    )
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.add_argument(
        "--termination-message-path",
        default=os.environ.get("RETRAINER_TERMINATION_MESSAGE_PATH"),
        help=argparse.SUPPRESS,
    )
    cluster = parser.add_argument_group("in-cluster mode (a verify Job that mounts the claim)")
    cluster.add_argument("--in-cluster", action="store_true", help="run the check in a Job")
    cluster.add_argument("-n", "--namespace", help="namespace of the claim")
    cluster.add_argument(
        "--claim",
        default=os.environ.get("RETRAINER_CLAIM_NAME", "retrainer-models"),
        help="PersistentVolumeClaim to mount (default: retrainer-models)",
    )
    cluster.add_argument(
        "--image", default="ghcr.io/retrainer/operator:0.1.0", help="image with `retrainer`"
    )
    cluster.add_argument(
        "--s3-secret",
        default="minio-credentials",
        help="Secret with accessKey/secretKey for MinIO (default: minio-credentials)",
    )
    cluster.add_argument("--timeout", type=int, default=600, help="seconds to wait for the Job")
    cluster.add_argument("--context", help="kubeconfig context to use")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify locally (or in a Job with --in-cluster); the exit code is the verdict."""
    from retrainer_operator import cli_kube

    if args.in_cluster:
        from retrainer_operator import cli_verify_job

        return cli_verify_job.run(args)
    if not args.root:
        raise cli_kube.CliError("--root is required: the folder where the claim is mounted")
    root = Path(args.root)
    if not (root / args.model).is_dir():
        raise cli_kube.CliError(
            f"no model line {args.model!r} under --root {root} (expected {root / args.model}/)",
            exit_code=1,
        )
    version = args.version if args.version is not None else latest_version(root, args.model)
    if version is None:
        raise cli_kube.CliError(
            f"no version of {args.model!r} under {root} (no models/retrained_vN.pt)", exit_code=1
        )
    if version < 1:
        raise cli_kube.CliError(f"version must be 1 or more, got {version}")
    remote = None if args.no_remote else remote_settings(args.s3_endpoint)
    rows = verify_version(root, args.model, version, remote)
    if args.output == "json":
        text = as_json(rows, args.model, version)
    else:
        text = f"{render_rows(rows, root)}\n{summary(rows, args.model, version)}"
    print(text)
    if args.termination_message_path:
        _write_termination_message(args.termination_message_path, text)
    return 1 if any(r.ok is False for r in rows) else 0
