"""The `retrainer` command: versions, verify, describe, promote/rollback and retain.

Only argument parsing and error reporting live here; each command is its own module of this
package (versions.py, verify.py, describe.py, champion.py, retain.py). No kopf, torch or
ultralytics import: the CLI must start fast and install light. Run as the `retrainer`
console script or `python -m retrainer_cli`.

Exit codes: 0 ok; 1 a check failed or an object is missing; 2 bad usage (argparse's code too).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from retrainer_cli import champion, describe, kube, retain, verify, versions

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (one subcommand per command module)."""
    parser = argparse.ArgumentParser(
        prog="retrainer",
        description="Inspect, verify and promote the model versions Retrainer produced.",
        epilog="Docs: docs/cli.md. Exit codes: 0 ok, 1 a check failed, 2 bad usage.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    versions.add_parser(subparsers)
    verify.add_parser(subparsers)
    describe.add_parser(subparsers)
    champion.add_parsers(subparsers)
    retain.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except kube.CliError as error:
        print(f"retrainer {args.command}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
