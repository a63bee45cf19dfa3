"""`python -m retrainer_world up|down|status|env`: the local world from a shell.

`up` starts (or reuses) the world and prints where everything is; `down` stops every process
of it; `status` health-checks each component; `env` prints `export K=V` lines for `eval`.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from retrainer_world import procs, world

__all__ = ["main"]


def _info(w: world.World) -> str:
    lines = [
        f"state={w.state}",
        f"kubeconfig={w.kubeconfig}",
        f"server={w.server}",
        f"node={w.node}",
        f"minio={w.minio_endpoint}",
        f"minio_credentials={w.layout.credentials}",
        f"mlflow={w.mlflow_uri}",
        f"bin_dir={w.bin_dir}",
        f"logs={w.layout.logs}",
        '# use it from a shell: eval "$(python -m retrainer_world env)"',
    ]
    return "\n".join(lines)


def _up(state: Path | None) -> int:
    w = world.start(state)
    print(_info(w))
    return 0


def _down(state: Path | None) -> int:
    killed = world.stop(state)
    print(f"world stopped state={world.state_path(state)}")
    if killed:
        print(f"needed SIGKILL: {', '.join(killed)}", file=sys.stderr)
    return 0


def _status(state: Path | None) -> int:
    try:
        w = world.World.load(state)
    except world.WorldNotRunning as exc:
        print(f"status=down reason={str(exc)!r}")
        return 1
    healthy = w.health()
    for name, ok in healthy.items():
        print(f"component={name} pid={w.pids[name]} healthy={str(ok).lower()}")
    ok_all = all(healthy.values())
    print(f"status={'healthy' if ok_all else 'unhealthy'} state={w.state}")
    return 0 if ok_all else 1


def _env(state: Path | None) -> int:
    w = world.World.load(state)
    for key, value in w.env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


COMMANDS = {"up": _up, "down": _down, "status": _status, "env": _env}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retrainer_world",
        description="The local Kubernetes world: etcd, apiserver, controllers, scheduler, "
        "pod runner, MinIO and MLflow on 127.0.0.1.",
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        help="state folder (default: $RETRAINER_STATE or ~/.cache/retrainer/world)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="world: level=%(levelname)s %(message)s"
    )
    try:
        return COMMANDS[args.command](args.state)
    except (world.WorldError, procs.ComponentError) as exc:
        # Both name what failed and how to fix it (a component's message names its log).
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
