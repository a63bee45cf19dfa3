"""The world's pure parts: component command lines, the admin kubeconfig, world.json as an
API, the client environment, and clear errors when binaries or the world are missing."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from retrainer_world import certs, components, startup, world
from retrainer_world.components import Layout, Ports

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    lay = Layout(tmp_path_factory.mktemp("state"))
    certs.ensure_pki(lay.pki.dir)
    return lay


def _ports() -> Ports:
    return Ports.from_list(list(range(20001, 20001 + Ports.count())))


def _world_data(state: Path) -> dict[str, object]:
    return {
        "kubeconfig": str(state / "kubeconfig"),
        "server": "https://127.0.0.1:20003",
        "minio": {"endpoint": "http://127.0.0.1:20006", "accessKey": "ak", "secretKey": "sk"},
        "mlflow": {"uri": "http://127.0.0.1:20008"},
        "bin_dir": "/opt/world-bin",
        "state": str(state),
        "node": "local-node",
        "pids": {},
        "ready": True,
    }


def test_kubeconfig_embeds_the_world_ca_and_admin_cert(layout: Layout) -> None:
    cfg = yaml.safe_load(components.kubeconfig_yaml("https://127.0.0.1:6443", layout.pki))
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == (
        layout.pki.ca_cert.read_bytes()
    )
    assert base64.b64decode(user["client-certificate-data"]) == layout.pki.admin_cert.read_bytes()
    assert base64.b64decode(user["client-key-data"]) == layout.pki.admin_key.read_bytes()
    assert cfg["current-context"] == cfg["contexts"][0]["name"]


def test_apiserver_uses_the_world_pki_and_rbac(layout: Layout) -> None:
    argv = components.apiserver_argv(Path("/b"), layout, _ports())
    assert argv[0] == "/b/kube-apiserver"
    assert "--etcd-servers=http://127.0.0.1:20001" in argv
    assert "--secure-port=20003" in argv
    assert f"--client-ca-file={layout.pki.ca_cert}" in argv
    assert f"--service-account-signing-key-file={layout.pki.sa_key}" in argv
    assert f"--service-account-key-file={layout.pki.sa_pub}" in argv
    assert "--service-cluster-ip-range=10.0.0.0/24" in argv
    assert any(a.startswith("--authorization-mode=") and "RBAC" in a for a in argv)


def test_controller_manager_keeps_the_controllers_jobs_need(layout: Layout) -> None:
    argv = components.controller_manager_argv(Path("/b"), layout, _ports())
    controllers = next(a for a in argv if a.startswith("--controllers=")).split("=", 1)[1]
    names = controllers.split(",")
    assert names[0] == "*"
    disabled = {n[1:] for n in names if n.startswith("-")}
    for needed in ("job", "garbagecollector", "ttl-after-finished", "serviceaccount-token"):
        assert not any(needed in d for d in disabled)
    assert "--leader-elect=false" in argv
    assert f"--service-account-private-key-file={layout.pki.sa_key}" in argv
    assert f"--root-ca-file={layout.pki.ca_cert}" in argv


def test_mlflow_stores_artifacts_in_the_minio_bucket_without_proxying(layout: Layout) -> None:
    argv = components.mlflow_argv(layout, _ports(), python="/venv/bin/python")
    assert argv[:2] == ["/venv/bin/mlflow", "server"]
    assert f"--backend-store-uri=sqlite:///{layout.mlflow_db}" in argv
    assert "--default-artifact-root=s3://mlflow/" in argv
    assert "--no-serve-artifacts" in argv
    assert "--port=20008" in argv


def test_podrunner_is_started_with_the_admin_kubeconfig_and_node(layout: Layout) -> None:
    argv = components.podrunner_argv(layout, python="/venv/bin/python")
    assert argv[:3] == ["/venv/bin/python", "-m", "retrainer_world.kubelet"]
    assert argv[argv.index("--kubeconfig") + 1] == str(layout.kubeconfig)
    assert argv[argv.index("--state") + 1] == str(layout.state)
    assert argv[argv.index("--node") + 1] == "local-node"


def test_every_port_is_on_loopback_only(layout: Layout) -> None:
    bins, ports = Path("/b"), _ports()
    argvs = [
        components.etcd_argv(bins, layout, ports),
        components.apiserver_argv(bins, layout, ports),
        components.controller_manager_argv(bins, layout, ports),
        components.scheduler_argv(bins, layout, ports),
        components.minio_argv(bins, layout, ports),
        components.mlflow_argv(layout, ports),
    ]
    for argv in argvs:
        for arg in argv:
            assert not re.search(r"(^|[=/])0\.0\.0\.0", arg), arg


def test_world_json_is_readable_through_the_api(tmp_path: Path) -> None:
    w = world.World(_world_data(tmp_path))
    assert w.kubeconfig == tmp_path / "kubeconfig"
    assert w.server == "https://127.0.0.1:20003"
    assert w.minio_endpoint == "http://127.0.0.1:20006"
    assert (w.minio_access_key, w.minio_secret_key) == ("ak", "sk")
    assert w.mlflow_uri == "http://127.0.0.1:20008"
    assert w.node == "local-node"
    assert w.state == tmp_path


def test_world_env_points_clients_at_the_world_with_binaries_first_on_path(
    tmp_path: Path,
) -> None:
    env = world.World(_world_data(tmp_path)).env()
    assert env["KUBECONFIG"] == str(tmp_path / "kubeconfig")
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:20008"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:20006"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("ak", "sk")
    assert env["PATH"].split(os.pathsep)[0] == "/opt/world-bin"


def test_loading_a_world_that_is_not_running_says_how_to_start_it(tmp_path: Path) -> None:
    with pytest.raises(world.WorldNotRunning, match="python -m retrainer_world up"):
        world.World.load(tmp_path)


def test_a_world_with_a_dead_component_is_not_loaded(tmp_path: Path) -> None:
    data = _world_data(tmp_path)
    data["pids"] = {"etcd": {"pid": os.getpid(), "started": 1}}
    (tmp_path / "world.json").write_text(__import__("json").dumps(data))
    with pytest.raises(world.WorldNotRunning, match="etcd"):
        world.World.load(tmp_path)


def test_missing_binaries_are_named_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etcd").write_text("#!/bin/sh\n")
    (tmp_path / "etcd").chmod(0o755)
    monkeypatch.setenv("RETRAINER_BIN_DIR", str(tmp_path))
    with pytest.raises(world.WorldError) as err:
        world.resolve_bin_dir()
    assert "kube-apiserver" in str(err.value)
    assert "etcd," not in str(err.value)
    assert "make tools" in str(err.value)


def test_bin_dir_is_the_one_build_tools_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With every binary present in the cache, the script only prints its folder.
    monkeypatch.delenv("RETRAINER_BIN_DIR", raising=False)
    monkeypatch.setenv("RETRAINER_CACHE", str(tmp_path))
    monkeypatch.setattr(startup, "BINARIES", ())
    expected = world.resolve_bin_dir()
    expected.mkdir(parents=True)
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        (expected / name).write_text("#!/bin/sh\n")
        (expected / name).chmod(0o755)
    for name in ("kubectl", "helm", "minio"):
        (expected / name).write_text("#!/bin/sh\n")
        (expected / name).chmod(0o755)
    out = subprocess.run(
        ["bash", str(REPO / "tools" / "build-tools.sh")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "RETRAINER_CACHE": str(tmp_path)},
    )
    assert Path(out.stdout.strip()) == expected


def test_down_stops_every_component_once_clients_before_servers() -> None:
    order = [name for tier, _ in components.STOP_TIERS for name in tier]
    assert sorted(order) == sorted(components.COMPONENTS)
    assert order.index("podrunner") < order.index("kube-apiserver") < order.index("etcd")
