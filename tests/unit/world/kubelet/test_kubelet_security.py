"""Container mode's securityContext: identity, the runAsNonRoot check, runtime arguments and
the fsGroup ownership of volumes (on real folders, as the runner's root user)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from retrainer_world.kubelet import security
from retrainer_world.kubelet.env import ConfigError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chgrp to another group needs root")


def _pod(pod_ctx: dict[str, Any], container_ctx: dict[str, Any] | None = None) -> Any:
    container: dict[str, Any] = {"name": "main", "image": "x"}
    if container_ctx is not None:
        container["securityContext"] = container_ctx
    return {"spec": {"securityContext": pod_ctx, "containers": [container]}}, container


def test_container_fields_win_over_pod_fields() -> None:
    pod, container = _pod({"runAsUser": 1, "runAsGroup": 2}, {"runAsUser": 3})
    assert security.merged(pod, container) == {"runAsUser": 3, "runAsGroup": 2}


@pytest.mark.parametrize(
    ("pod_ctx", "image_user", "message"),
    [
        ({"runAsNonRoot": True}, "", "image will run as root"),
        ({"runAsNonRoot": True}, "root", "image will run as root"),
        ({"runAsNonRoot": True}, "0:0", "image will run as root"),
        ({"runAsNonRoot": True}, "retrainer", "non-numeric user (retrainer)"),
        ({"runAsNonRoot": True, "runAsUser": 0}, "10001", "runAsUser breaks non-root"),
    ],
)
def test_run_as_non_root_refuses_a_root_or_unverifiable_user(
    pod_ctx: dict[str, Any], image_user: str, message: str
) -> None:
    pod, container = _pod(pod_ctx)
    with pytest.raises(ConfigError, match=re.escape(message)):
        security.check_non_root(pod, container, image_user)


@pytest.mark.parametrize(
    ("pod_ctx", "image_user"),
    [
        ({"runAsNonRoot": True}, "10001:10001"),
        ({"runAsNonRoot": True, "runAsUser": 5}, "root"),
        ({}, "root"),
    ],
)
def test_run_as_non_root_lets_a_numeric_non_root_user_start(
    pod_ctx: dict[str, Any], image_user: str
) -> None:
    pod, container = _pod(pod_ctx)
    security.check_non_root(pod, container, image_user)


def test_the_restricted_context_becomes_podman_arguments() -> None:
    pod, container = _pod(
        {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 2000, "supplementalGroups": [7]},
        {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        },
    )
    args = security.engine_args(pod, container, "")
    assert args[:2] == ["--user", "10001:10001"]
    assert args[2:6] == ["--group-add", "7", "--group-add", "2000"]
    assert "--read-only" in args and "--read-only-tmpfs=false" in args
    assert "--cap-drop=all" in args and "--cap-add=NET_BIND_SERVICE" in args
    assert args[args.index("--security-opt") + 1] == "no-new-privileges"


def test_only_a_group_keeps_the_images_user() -> None:
    pod, container = _pod({"runAsGroup": 5})
    assert security.engine_args(pod, container, "10001:10001")[:2] == ["--user", "10001:5"]


def test_fs_user_is_the_user_every_container_shares() -> None:
    pod, _ = _pod({"runAsUser": 10001})
    assert security.fs_user(pod) == 10001
    pod["spec"]["containers"].append({"name": "b", "securityContext": {"runAsUser": 1}})
    assert security.fs_user(pod) is None


@needs_root
def test_fs_group_chgrps_the_volume_and_sets_setgid_on_folders(tmp_path: Path) -> None:
    claim = tmp_path / "claim"
    (claim / "v1").mkdir(parents=True)
    (claim / "v1" / "best.pt").write_bytes(b"w")
    os.chmod(claim, 0o755)
    pod = {
        "spec": {
            "securityContext": {"fsGroup": 4242},
            "containers": [{"name": "main"}],
            "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "c"}}],
        }
    }
    security.apply_fs_group(pod, {"models": claim})
    for path in (claim, claim / "v1"):
        info = path.stat()
        assert info.st_gid == 4242
        assert info.st_mode & stat.S_ISGID and info.st_mode & stat.S_IWGRP
    weights = (claim / "v1" / "best.pt").stat()
    assert weights.st_gid == 4242 and weights.st_mode & stat.S_IWGRP


@needs_root
def test_without_fs_group_a_claim_stays_root_owned_and_an_empty_dir_is_world_writable(
    tmp_path: Path,
) -> None:
    claim, scratch = tmp_path / "claim", tmp_path / "scratch"
    claim.mkdir(mode=0o755)
    scratch.mkdir(mode=0o755)
    pod = {
        "spec": {
            "containers": [{"name": "main"}],
            "volumes": [
                {"name": "models", "persistentVolumeClaim": {"claimName": "c"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        }
    }
    security.apply_fs_group(pod, {"models": claim, "tmp": scratch})
    assert stat.S_IMODE(claim.stat().st_mode) == 0o755 and claim.stat().st_gid == 0
    assert stat.S_IMODE(scratch.stat().st_mode) == 0o777


@needs_root
def test_a_token_is_narrowed_to_the_pods_user(tmp_path: Path) -> None:
    folder = tmp_path / "token"
    folder.mkdir()
    (folder / "token").write_text("t")
    os.chmod(folder / "token", 0o644)
    pod = {
        "spec": {
            "securityContext": {"runAsUser": 10001},
            "containers": [{"name": "main"}],
            "volumes": [
                {
                    "name": "sa",
                    "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
                }
            ],
        }
    }
    security.apply_fs_group(pod, {"sa": folder})
    info = (folder / "token").stat()
    assert info.st_uid == 10001 and stat.S_IMODE(info.st_mode) == 0o600
