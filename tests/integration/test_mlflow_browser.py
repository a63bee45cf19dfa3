"""Retrainer in MLflow's web UI, as a person sees it in a browser (headless Chromium driven by
tests/integration/browser_support.py) against the world's MLflow: what docs/mlflow.md says.

The operator trains two versions of line `shapes` under spec.promotion with a registered model
and label corrections: v1 (the first: NoChampion, made champion by the operator) and v2 from v1
(Rejected: it must beat v1 by a whole point of mAP50), so `champion` names v1 and `challenger`
v2. Then a person follows the links `make demo` prints (MLflow itself; a version's
status.mlflow.runUrl) and opens the pages docs/mlflow.md describes: the experiment, the run
(datasets by role, the logged model, Retrainer's tags), the logged model, the registered model
(each alias on its own version only) and each registered version (Retrainer's tags).

Every page asserted is also a screenshot, in a temp folder always and in $RETRAINER_SCREENSHOTS
when set: `RETRAINER_SCREENSHOTS=docs/images` makes the docs' docs/images/mlflow-*.png.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_support import Browser, Page, is_png
from kubernetes import client
from operator_support import (
    create,
    get_line,
    mlflow_json,
    operator_in_prepared_namespace,
    retrainjob,
    upload_dataset,
    upload_folder,
    wait_finished,
    wait_for,
)
from retrainer_contract import tracking
from retrainer_demo import shapes
from retrainer_world.world import World

pytestmark = pytest.mark.integration

SIZE = 64
TRAINING = {"epochs": 1, "imgsz": SIZE, "batch": 16, "extraArgs": {"workers": 0}}
SCREENSHOTS = "RETRAINER_SCREENSHOTS"
WIDTH, HEIGHT = 1280, 900


@dataclass
class Line:
    """Two versions of line `shapes`, trained and verified by the operator."""

    namespace: str  # also the experiment's and the registered model's name
    jobs: dict[int, dict[str, Any]]  # Retrainer version -> its finished RetrainJob
    logged_models: dict[int, str]  # Retrainer version -> logged model id
    mlflow_uri: str

    @property
    def registered(self) -> str:
        return self.namespace

    @property
    def experiment_id(self) -> str:
        return str(self.jobs[1]["status"]["mlflow"]["experimentId"])

    def status(self, version: int) -> dict[str, Any]:
        status: dict[str, Any] = self.jobs[version]["status"]
        return status

    def run_id(self, version: int) -> str:
        return str(self.status(version)["mlflow"]["runId"])

    def model_version(self, version: int) -> str:
        return str(self.status(version)["mlflow"]["registeredModelVersion"])

    def sha256(self, version: int) -> str:
        return str(
            next(a for a in self.status(version)["artifacts"] if a["name"] == "production")[
                "sha256"
            ]
        )

    def url(self, route: str) -> str:
        return f"{self.mlflow_uri}/#/{route}"


@pytest.fixture(scope="module")
def module_namespace(world: World, kube: client.ApiClient) -> Iterator[str]:
    """The `namespace` fixture's namespace, for the whole module (one training for all tests)."""
    core = client.CoreV1Api(kube)
    name = f"t-mlflow-browser-{secrets.token_hex(3)}"
    meta = client.V1ObjectMeta(name=name, labels={"retrainer.dev/test": "true"})
    core.create_namespace(client.V1Namespace(metadata=meta))
    try:
        keys = {"accessKey": world.minio_access_key, "secretKey": world.minio_secret_key}
        secret = client.V1ObjectMeta(name="minio-credentials")
        core.create_namespaced_secret(name, client.V1Secret(metadata=secret, string_data=keys))
        # Pods are refused until the controller manager has filled the new namespace.
        wait_for(
            "its default ServiceAccount",
            lambda: core.read_namespaced_service_account("default", name),
            60,
        )
        wait_for(
            "its kube-root-ca.crt",
            lambda: core.read_namespaced_config_map("kube-root-ca.crt", name),
            60,
        )
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def line(
    world: World,
    kube: client.ApiClient,
    crd: object,
    module_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Line:
    namespace = module_namespace
    tmp = tmp_path_factory.mktemp("line")
    dataset = upload_dataset(world, tmp, f"{namespace}/shapes", size=SIZE)
    fixes = shapes.write_corrections(tmp / "b1", size=SIZE)
    corrections = upload_folder(world, fixes, f"{namespace}/corrections/b1")
    holdout_folder = shapes.generate_holdout(tmp / "holdout", count=8, size=SIZE)
    holdout = upload_folder(world, holdout_folder, f"{namespace}/holdout")
    promotion = {"metric": "mAP50", "holdout": {"uri": holdout}}

    def job(name: str, **spec: Any) -> dict[str, Any]:
        return retrainjob(
            name,
            dataset,
            training=TRAINING,
            corrections={"uri": corrections},
            mlflow={"experiment": namespace, "registeredModel": namespace},
            **spec,
        )

    with operator_in_prepared_namespace(world, kube, namespace, tmp) as operator:
        create(kube, namespace, job("shapes-a", promotion=promotion))
        first = wait_finished(kube, namespace, "shapes-a", operator)
        # Nothing beats a champion by a whole point of mAP50: Rejected, the champion stays v1.
        better_by_one = {**promotion, "minImprovement": 1}
        create(
            kube,
            namespace,
            job("shapes-b", baseModel={"version": "latest"}, promotion=better_by_one),
        )
        second = wait_finished(kube, namespace, "shapes-b", operator)
        jobs = {1: first, 2: second}
        for version, obj in jobs.items():
            assert obj["status"]["phase"] == "Succeeded", json.dumps(obj["status"], indent=1)
            assert obj["status"]["version"] == version
        assert [jobs[v]["status"]["evaluation"]["decision"] for v in (1, 2)] == [
            "NoChampion",
            "Rejected",
        ]
        wait_for(
            "v1 the line's champion",
            lambda: (get_line(kube, namespace, "shapes").get("status") or {}).get("champion"),
            60,
            operator,
        )
    logged = {}
    for version, obj in jobs.items():
        run_id = obj["status"]["mlflow"]["runId"]
        run = mlflow_json(world, f"/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
        (output,) = run["outputs"]["model_outputs"]
        logged[version] = str(output["model_id"])
    return Line(namespace, jobs, logged, world.mlflow_uri)


@dataclass
class Shots:
    folder: Path

    def take(self, page: Page, name: str) -> Path:
        """The page as docs/images/mlflow-<name>.png would show it; a real picture or fail."""
        path = page.screenshot(self.folder / f"mlflow-{name}.png")
        # A blank or half-drawn page compresses to a few KB: 20 KB is a page with content.
        assert is_png(path, min_bytes=20_000) == (WIDTH, HEIGHT), (path, path.stat().st_size)
        extra = os.environ.get(SCREENSHOTS)
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(extra) / path.name)
        return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Shots:
    return Shots(tmp_path_factory.mktemp("screenshots"))


def flat(text: str) -> str:
    """Text as one line, each run of whitespace (line breaks, table cells) one space."""
    return " ".join(text.split())


def shows_tag(text: str, key: str, value: str) -> bool:
    """Whether `text` shows tag `key` with `value` ("key: value" on tag chips, "key value"
    in tables); `value` whole, not a prefix of a longer one."""
    pattern = rf"(?:^|\s){re.escape(key)}(?: :)? {re.escape(value)}(?=\s|$)"
    return re.search(pattern, flat(text)) is not None


def model_training_view(page: Page, mlflow_uri: str) -> None:
    """What a person does first in MLflow 3.17 (docs/mlflow.md): pick the Model training view
    (the UI starts in GenAI's), close the assistant panel and the telemetry notice. The browser
    keeps the choice for every later page."""
    page.open(f"{mlflow_uri}/", "Model training")
    page.click_text("Model training")
    page.wait_for("Model registry")
    page.evaluate(
        """[...document.querySelectorAll('button')]
             .filter(b => ['Close', 'Close alert'].includes(b.getAttribute('aria-label')))
             .forEach(b => b.click())"""
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser(WIDTH, HEIGHT) as opened:
        yield opened


@pytest.fixture(scope="module")
def view(browser: Browser, line: Line) -> Page:
    """A tab in the Model training view."""
    page = browser.page()
    model_training_view(page, line.mlflow_uri)
    return page


def test_the_demos_mlflow_link_opens_mlflow_and_its_model_training_view_the_experiment(
    line: Line,
) -> None:
    # `make demo` prints "MLflow UI: <tracking URI> (the line's runs: <experiment URL>; ...)".
    # A bare address opens MLflow 3 in its GenAI view; the printed experiment link asks for the
    # model-training view, and gets it on a first visit, in a browser of its own.
    with Browser(WIDTH, HEIGHT) as fresh:
        page = fresh.page()
        home = page.open(f"{line.mlflow_uri}/", "Welcome to MLflow", "Experiments")
        assert "Welcome to MLflow" in home and "Model training" in home
        assert "Model registry" not in home  # the GenAI view first: no registry in its menu
    with Browser(WIDTH, HEIGHT) as fresh:
        page = fresh.page()
        link = tracking.experiment_url(line.mlflow_uri, line.experiment_id)
        experiment = page.open(link, "shapes-v2", "Model registry")

    # The experiment opens on its runs, one per version, each with its three datasets.
    assert re.search(r"\bRuns Models\b", flat(experiment)), experiment
    assert "2 matching runs" in experiment
    assert "shapes-v1" in experiment and "shapes-v2" in experiment
    lineage, evaluation = line.status(1)["lineage"], line.status(1)["evaluation"]
    datasets = (
        f"shapes ({tracking.dataset_digest(lineage['datasetSha256'])}) Training , "
        f"b1 ({tracking.dataset_digest(lineage['correctionsSha256'])}) Corrections , "
        f"holdout ({tracking.dataset_digest(evaluation['holdoutSha256'])}) Evaluation"
    )
    assert flat(experiment).count(datasets) == 2, experiment


def test_each_versions_run_url_opens_its_run_page_in_a_new_browser(line: Line) -> None:
    with Browser(WIDTH, HEIGHT) as fresh:
        page = fresh.page()
        for version, other in ((1, 2), (2, 1)):
            url = line.status(version)["mlflow"]["runUrl"]
            # What the operator writes (and `make demo`, `retrainer describe` print).
            assert url == tracking.run_url(
                line.mlflow_uri, line.experiment_id, line.run_id(version)
            )

            text = page.open(url, f"shapes-v{version}", line.run_id(version))

            assert f"Runs shapes-v{version} Overview" in flat(text), text  # the page's title
            assert f"Run ID {line.run_id(version)}" in flat(text), text
            assert line.run_id(other) not in text
            assert line.run_id(version) in page.evaluate("location.href")  # not sent elsewhere
            # A first visit, and the link asks for it: the model-training view, registry in
            # its menu (without the query MLflow would open its GenAI view).
            assert tracking.MODEL_TRAINING_VIEW in url
            assert "Model registry" in text, text


def test_the_run_page_shows_the_three_datasets_the_logged_model_and_retrainers_tags(
    line: Line, view: Page, shots: Shots
) -> None:
    run = line.url(f"experiments/{line.experiment_id}/runs/{line.run_id(1)}")
    lineage, evaluation = line.status(1)["lineage"], line.status(1)["evaluation"]

    view.open(run, "shapes-v1", "Datasets", "+2")
    # The first dataset shows; the other two behind "+2", as a person clicks it.
    view.click_text("+2", "[data-component-type=tag]")
    text = flat(view.wait_for("Corrections", "Evaluation"))
    shots.take(view, "run")

    for name, sha, role in (
        ("shapes", lineage["datasetSha256"], "Training"),
        ("b1", lineage["correctionsSha256"], "Corrections"),
        ("holdout", evaluation["holdoutSha256"], "Evaluation"),
    ):
        assert f"{name} ({tracking.dataset_digest(sha)}) {role}" in text, (name, text)
    assert "Logged models (1)" in text and "shapes-v1 Ready" in text, text
    assert f"Registered models {line.registered} v1" in text, text
    uid = line.jobs[1]["metadata"]["uid"]
    for key, value in (
        (tracking.TAG_UID, uid),
        (tracking.TAG_NAMESPACE, line.namespace),
        (tracking.TAG_MODEL, "shapes"),
        (tracking.TAG_VERSION, "1"),
        (tracking.TAG_BASE, "yolo11n.yaml"),
        (tracking.TAG_VERIFIED, line.sha256(1)),
    ):
        assert shows_tag(text, key, value), (key, value, text)
    assert re.search(rf"{re.escape(tracking.TAG_CHAMPION)} : \S+ Promoted", text), text

    # v2, verified but never the champion: no champion tag, its own version.
    other = flat(view.open(run.replace(line.run_id(1), line.run_id(2)), "shapes-v2", "Tags"))
    assert shows_tag(other, tracking.TAG_VERSION, "2") and not shows_tag(
        other, tracking.TAG_VERSION, "1"
    )
    assert shows_tag(other, tracking.TAG_VERIFIED, line.sha256(2))
    assert tracking.TAG_CHAMPION not in other, other


def test_the_models_tab_lists_each_version_and_the_logged_model_page_its_lineage(
    line: Line, view: Page, shots: Shots
) -> None:
    models = view.open(line.url(f"experiments/{line.experiment_id}/models"), "shapes-v2")
    assert "Models" in models and "shapes-v1" in models and "shapes-v2" in models
    lineage, evaluation = line.status(1)["lineage"], line.status(1)["evaluation"]

    page = line.url(f"experiments/{line.experiment_id}/models/{line.logged_models[1]}")
    text = flat(view.open(page, "shapes-v1", "Model versions"))
    shots.take(view, "logged-model")

    assert "Models shapes-v1 Register model" in text, text  # the page's title
    assert f"Source run shapes-v1 Source run ID {line.run_id(1)}" in text, text
    holdout = f"holdout (#{tracking.dataset_digest(evaluation['holdoutSha256'])})"
    assert f"holdout.mAP50 {holdout} shapes-v1" in text, text  # its score, tied to the holdout
    assert f"Datasets used {holdout}" in text, text
    for key, value in (
        ("datasetSha256", lineage["datasetSha256"]),
        ("correctionsSha256", lineage["correctionsSha256"]),
        ("holdoutSha256", evaluation["holdoutSha256"]),
        ("version", "1"),
    ):
        assert shows_tag(text, key, value), (key, text)
    assert f"Model versions {line.registered} v1" in text, text
    assert "shapes-v2" not in text
    # Its type and tags are MLflow's API's only: the 3.17 UI shows neither (docs/mlflow.md).
    assert tracking.TAG_SHA256 not in text and "ultralytics-yolo" not in text


def test_the_registered_model_shows_each_alias_on_its_own_version_only(
    line: Line, view: Page, shots: Shots
) -> None:
    view.open(line.url(f"models/{line.registered}"), "Version 1", "Version 2", "@ champion")
    rows = {
        row.split(" ", 2)[1]: row
        for row in map(flat, view.texts("tr, [role=row]"))
        if row.startswith("Version ") and row.split(" ", 2)[1].isdigit()
    }
    shots.take(view, "registered-model")

    champion, challenger = rows[line.model_version(1)], rows[line.model_version(2)]
    assert "@ champion" in champion and "@ challenger" not in champion, champion
    assert "@ challenger" in challenger and "@ champion" not in challenger, challenger
    assert shows_tag(champion, tracking.TAG_DECISION, "NoChampion"), champion
    assert shows_tag(challenger, tracking.TAG_DECISION, "Rejected"), challenger
    assert set(rows) == {line.model_version(1), line.model_version(2)}


@pytest.mark.parametrize(
    ("version", "alias", "decision"), [(1, "champion", "NoChampion"), (2, "challenger", "Rejected")]
)
def test_each_registered_version_page_shows_retrainers_tags_its_alias_and_decision(
    line: Line, view: Page, shots: Shots, version: int, alias: str, decision: str
) -> None:
    number = line.model_version(version)
    url = line.url(f"models/{line.registered}/versions/{number}")

    text = flat(view.open(url, f"Version {number}", tracking.TAG_RETRAINJOB, "@ "))
    if version == 1:
        shots.take(view, "model-version")
    tags = {flat(row) for row in view.texts("tr, [role=row]")}

    for key, value in (
        (tracking.TAG_VERSION, str(version)),
        (tracking.TAG_SHA256, line.sha256(version)),
        (tracking.TAG_DECISION, decision),
        (tracking.TAG_RETRAINJOB, line.jobs[version]["metadata"]["name"]),
        (tracking.TAG_NAMESPACE, line.namespace),
    ):
        assert f"{key} {value}" in tags, (key, value, tags)
    aliases = re.search(r"Aliases : (.*?) Stage", text)
    assert aliases is not None and aliases.group(1) == f"@ {alias}", text  # and no other
    assert f"Source Run : shapes-v{version} Source Model : shapes-v{version}" in text, text
    assert f"Decision: {decision}," in text, text
    assert line.status(version)["evaluation"]["reason"] in text, text
