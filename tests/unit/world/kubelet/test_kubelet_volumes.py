"""Volumes become local folders; a launch maps the pod's paths into them."""

from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from retrainer_world.kubelet.launch import LaunchContext, base_env, build_launch
from retrainer_world.kubelet.pvprovisioner import pv_for_claim, wants_volume
from retrainer_world.kubelet.volumes import VolumeError, prepare_volumes


class Cluster:
    """What the runner reads from the API, held in dicts."""

    def __init__(self, claims: dict[str, Path]) -> None:
        self.claims = claims
        self.secrets = {"creds": {"accessKey": b"ak", "secretKey": b"sk"}}
        self.maps = {"kube-root-ca.crt": {"ca.crt": b"CA"}, "cfg": {"a.yaml": b"a: 1"}}

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.secrets.get(name)

    def config_map_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.maps.get(name)

    def claim_path(self, namespace: str, claim: str) -> Path | None:
        return self.claims.get(claim)

    def token(self, namespace: str, sa: str, pod: Any, audiences: list[str], seconds: int) -> str:
        return f"token-for-{namespace}/{sa}/{pod['metadata']['name']}"


def make_pod(volumes: list[dict[str, Any]], container: dict[str, Any] | None = None) -> Any:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1", "labels": {"a": "b"}},
        "spec": {
            "nodeName": "local-node",
            "serviceAccountName": "trainer",
            "volumes": volumes,
            "containers": [container or {"name": "c"}],
        },
    }


def test_secret_items_are_written_with_their_modes(tmp_path: Path) -> None:
    pod = make_pod(
        [
            {
                "name": "s",
                "secret": {
                    "secretName": "creds",
                    "items": [{"key": "accessKey", "path": "keys/ak", "mode": 0o400}],
                },
            }
        ]
    )
    folders = prepare_volumes(pod, tmp_path, Cluster({}), "local-node")
    written = folders["s"] / "keys" / "ak"
    assert written.read_bytes() == b"ak"
    assert stat.S_IMODE(written.stat().st_mode) == 0o400
    assert not (folders["s"] / "secretKey").exists()


def test_config_map_downward_api_and_empty_dir_volumes(tmp_path: Path) -> None:
    pod = make_pod(
        [
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "scratch", "emptyDir": {}},
            {
                "name": "info",
                "downwardAPI": {
                    "items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]
                },
            },
        ]
    )
    folders = prepare_volumes(pod, tmp_path, Cluster({}), "local-node")
    assert (folders["cfg"] / "a.yaml").read_text() == "a: 1"
    assert folders["scratch"] == tmp_path / "volumes" / "scratch" and folders["scratch"].is_dir()
    assert (folders["info"] / "name").read_text() == "p"


def test_projected_service_account_volume_gets_a_bound_token_and_ca(tmp_path: Path) -> None:
    pod = make_pod(
        [
            {
                "name": "kube-api-access-x",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ]
                },
            }
        ]
    )
    folder = prepare_volumes(pod, tmp_path, Cluster({}), "local-node")["kube-api-access-x"]
    assert (folder / "token").read_text() == "token-for-ns/trainer/p"
    assert (folder / "ca.crt").read_text() == "CA"
    assert (folder / "namespace").read_text() == "ns"


def test_unbound_claim_and_missing_secret_wait_but_optional_ones_do_not(tmp_path: Path) -> None:
    cluster = Cluster({})
    with pytest.raises(VolumeError, match='persistentvolumeclaim "models" is not bound'):
        pvc = {"name": "m", "persistentVolumeClaim": {"claimName": "models"}}
        prepare_volumes(make_pod([pvc]), tmp_path, cluster, "n")
    with pytest.raises(VolumeError, match='secret "gone" not found in namespace ns'):
        prepare_volumes(
            make_pod([{"name": "s", "secret": {"secretName": "gone"}}]), tmp_path, cluster, "n"
        )
    optional = {"name": "s", "secret": {"secretName": "gone", "optional": True}}
    folders = prepare_volumes(make_pod([optional]), tmp_path, cluster, "n")
    assert list(folders["s"].iterdir()) == []


def test_item_paths_may_not_escape_the_volume(tmp_path: Path) -> None:
    bad = {
        "name": "s",
        "secret": {"secretName": "creds", "items": [{"key": "accessKey", "path": "../x"}]},
    }
    with pytest.raises(VolumeError, match=r"without '\.\.'"):
        prepare_volumes(make_pod([bad]), tmp_path, Cluster({}), "n")


def test_claims_get_a_retained_hostpath_volume_bound_to_them(tmp_path: Path) -> None:
    claim: dict[str, Any] = {
        "metadata": {"name": "models", "namespace": "ns", "uid": "c-1"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
        "status": {"phase": "Pending"},
    }
    assert wants_volume(claim)
    pv = pv_for_claim(claim, tmp_path)
    assert pv["metadata"]["name"] == "pvc-c-1"
    assert pv["spec"]["hostPath"]["path"] == str(tmp_path / "volumes" / "ns" / "models")
    assert pv["spec"]["capacity"] == {"storage": "2Gi"}
    assert pv["spec"]["storageClassName"] == ""
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["claimRef"]["uid"] == "c-1"
    assert not wants_volume({**claim, "spec": {**claim["spec"], "volumeName": "pv-x"}})


def test_a_launch_maps_paths_and_passes_only_pod_env(tmp_path: Path) -> None:
    claim_dir = tmp_path / "claims" / "models"
    container = {
        "name": "trainer",
        "image": "ghcr.io/retrainer/trainer:0.1.0",
        "command": ["python", "-m", "x", "--root=$(RETRAINER_STORAGE_ROOT)/shapes"],
        "env": [
            {"name": "RETRAINER_STORAGE_ROOT", "value": "/var/lib/retrainer"},
            {"name": "RETRAINER_TERMINATION_MESSAGE_PATH", "value": "/dev/termination-log"},
            {
                "name": "AWS_ACCESS_KEY_ID",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "accessKey"}},
            },
        ],
        "volumeMounts": [{"name": "models", "mountPath": "/var/lib/retrainer"}],
    }
    pod = make_pod(
        [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}], container
    )
    cluster = Cluster({"models": claim_dir})
    folders = prepare_volumes(pod, tmp_path / "pods" / "uid-1", cluster, "local-node")
    venv = Path(sys.prefix)
    ctx = LaunchContext(
        source=cluster,
        state=tmp_path,
        node="local-node",
        venv=venv,
        repo=tmp_path,
        base=base_env(venv, {"PATH": "/usr/bin", "LANG": "C.UTF-8", "SECRET_TOKEN": "no"}),
    )
    launch = build_launch(ctx, pod, container, folders)
    assert launch.argv[0] == str(venv / "bin" / "python")
    assert launch.argv[-1] == f"--root={claim_dir}/shapes"
    assert launch.env["RETRAINER_STORAGE_ROOT"] == str(claim_dir)
    message_file = tmp_path / "pods" / "uid-1" / "trainer.termination-log"
    assert launch.env["RETRAINER_TERMINATION_MESSAGE_PATH"] == str(message_file)
    assert launch.message_file == message_file
    assert launch.env["AWS_ACCESS_KEY_ID"] == "ak"
    assert launch.env["PATH"] == f"{venv}/bin:/usr/bin"
    assert launch.env["LANG"] == "C.UTF-8" and launch.env["PYTHONUNBUFFERED"] == "1"
    assert launch.env["HOME"] == str(tmp_path / "pods" / "uid-1" / "home")
    assert "SECRET_TOKEN" not in launch.env
    assert launch.log_file == tmp_path / "logs" / "pods" / "ns_p_trainer.log"
    assert launch.cwd == tmp_path / "pods" / "uid-1" / "work"


def test_a_pod_with_a_token_gets_a_kubeconfig_for_its_service_account(tmp_path: Path) -> None:
    volume = {
        "name": "kube-api-access-x",
        "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
    }
    container = {"name": "op", "command": ["true"]}
    pod = make_pod([volume], container)
    cluster = Cluster({})
    folders = prepare_volumes(pod, tmp_path / "pods" / "uid-1", cluster, "n")
    venv = Path(sys.prefix)
    ctx = LaunchContext(
        source=cluster,
        state=tmp_path,
        node="n",
        venv=venv,
        repo=tmp_path,
        server="https://127.0.0.1:6443",
        ca_file="/ca.crt",
    )
    launch = build_launch(ctx, pod, container, folders)
    config = yaml.safe_load(Path(launch.env["KUBECONFIG"]).read_text())
    assert config["clusters"][0]["cluster"] == {
        "server": "https://127.0.0.1:6443",
        "certificate-authority": "/ca.crt",
    }
    assert config["users"][0]["user"]["token"] == "token-for-ns/trainer/p"


def test_a_deleted_pods_folders_go_but_its_termination_messages_stay(tmp_path: Path) -> None:
    import threading
    from typing import cast

    from retrainer_world.kubelet.runner import Runner

    pod_root = tmp_path / "pods" / "uid-1"
    for folder in ("volumes/scratch", "home", "work"):
        (pod_root / folder).mkdir(parents=True)
    (pod_root / "kubeconfig").write_text("token: secret")
    (pod_root / "main.termination-log").write_text("done")
    ctx = LaunchContext(source=Cluster({}), state=tmp_path, node="n", venv=tmp_path, repo=tmp_path)

    Runner(cast(Any, None), ctx, threading.Event()).cleanup("uid-1")

    assert [p.name for p in pod_root.iterdir()] == ["main.termination-log"]


def test_image_entrypoint_is_a_host_path_even_under_a_mounted_folder(tmp_path: Path) -> None:
    # A checkout (and so its venv) under /tmp, and a pod that mounts an emptyDir at /tmp, as
    # the chart's read-only-root operator does: only the container's own args are mapped.
    from retrainer_world.kubelet.images import ImageEntry

    venv = tmp_path / "venv"
    container = {
        "name": "op",
        "image": "tool",
        "args": ["/tmp/out"],
        "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
    }
    pod = make_pod([{"name": "scratch", "emptyDir": {}}], container)
    cluster = Cluster({})
    folders = prepare_volumes(pod, tmp_path / "pods" / "uid-1", cluster, "n")
    ctx = LaunchContext(
        source=cluster,
        state=tmp_path,
        node="n",
        venv=venv,
        repo=tmp_path,
        images={"tool": ImageEntry(entrypoint=("{venv}/bin/tool",), cmd=())},
    )
    launch = build_launch(ctx, pod, container, folders)
    assert str(venv).startswith("/tmp/")
    assert launch.argv == [f"{venv}/bin/tool", f"{folders['scratch']}/out"]
