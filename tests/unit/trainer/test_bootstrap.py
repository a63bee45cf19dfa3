"""The paired bootstrap (retrainer_trainer.bootstrap): Ultralytics' own numbers on the full set
and on explicitly repeated images, the interval's determinism, and the matches `validate` keeps.

The reference is Ultralytics itself: `ap_per_class` over the stats of the drawn images laid end
to end (an image drawn k times k times), then `Metric`, exactly as DetMetrics.process does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from retrainer_demo import shapes
from retrainer_trainer import bootstrap, holdout, training

KEYS = ("precision", "recall", "mAP50", "mAP50_95")
CLASSES = 4  # 0 and 1 labelled and predicted, 2 labelled but never predicted, 3 never labelled


def synthetic(seed: int, images: int = 30, ties: bool = False) -> bootstrap.Matches:
    """Stats as DetectionValidator makes them: float32 confidences, float64 empties for an image
    without predictions, at most as many true positives per class as the image has labels,
    a prediction correct at IoU t also correct at every lower threshold."""
    rng = np.random.default_rng(seed)
    tp: list[np.ndarray] = []
    conf: list[np.ndarray] = []
    pred_cls: list[np.ndarray] = []
    target_cls: list[np.ndarray] = []
    for i in range(images):
        labels = rng.integers(0, 3, rng.integers(0, 6) if i % 7 else 0).astype(np.float32)
        count = rng.integers(1, 40) if i % 5 else 0
        if count == 0:
            tp.append(np.zeros((0, 10), bool))
            conf.append(np.zeros(0))
            pred_cls.append(np.zeros(0))
        else:
            classes = rng.choice(np.array([0, 1, 3], np.float32), count)
            hits = np.zeros((count, 10), bool)
            for c in np.unique(classes):
                mine = np.flatnonzero(classes == c)
                right = rng.choice(mine, rng.integers(0, min(len(mine), (labels == c).sum()) + 1))
                for k in right:
                    hits[k, : rng.integers(1, 11)] = True
            scores = rng.random(count).astype(np.float32)
            tp.append(hits)
            conf.append(np.round(scores * 20) / 20 if ties else scores)
            pred_cls.append(classes)
        target_cls.append(labels)
    return bootstrap.Matches(
        images=tuple(f"images/{i:03d}.jpg" for i in range(images)),
        tp=tuple(tp),
        conf=tuple(conf),
        pred_cls=tuple(pred_cls),
        target_cls=tuple(target_cls),
        names=tuple(f"c{i}" for i in range(CLASSES)),
    )


def ultralytics(m: bootstrap.Matches, counts: np.ndarray) -> tuple[list[float], dict[str, list]]:
    """Metric.mean_results and class_result of the images drawn `counts` times, concatenated."""
    from ultralytics.utils.metrics import Metric, ap_per_class

    drawn = np.repeat(np.arange(len(m.images)), counts)

    def cat(values: tuple[np.ndarray, ...]) -> np.ndarray:
        return np.concatenate([values[i] for i in drawn], 0)

    metric = Metric()
    if drawn.size:
        metric.update(ap_per_class(cat(m.tp), cat(m.conf), cat(m.pred_cls), cat(m.target_cls))[2:])
    per_class = {
        m.names[int(c)]: list(metric.class_result(i)) for i, c in enumerate(metric.ap_class_index)
    }
    return [float(v) for v in metric.mean_results()], per_class


def assert_as_ultralytics(m: bootstrap.Matches, weights: np.ndarray) -> None:
    ours = bootstrap.scores(m, weights)
    classes = {key: bootstrap.per_class(m, weights, key) for key in KEYS}
    for row, counts in enumerate(weights):
        means, per_class = ultralytics(m, counts)
        for key, value in zip(KEYS, means, strict=True):
            assert ours[key][row] == pytest.approx(value, abs=1e-9), (row, key)
        for i, key in enumerate(KEYS):
            got = {name: v[row] for name, v in classes[key].items() if not np.isnan(v[row])}
            assert got == pytest.approx({n: v[i] for n, v in per_class.items()}, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_the_full_set_scores_as_ultralytics(seed: int) -> None:
    m = synthetic(seed)
    assert_as_ultralytics(m, np.ones((1, len(m.images)), np.int64))
    # the class predicted but never labelled counts nowhere; the one never predicted counts 0
    assert set(bootstrap.per_class(m, np.ones((1, 30), np.int64), "mAP50")) == {"c0", "c1", "c2"}
    assert bootstrap.per_class(m, np.ones((1, 30), np.int64), "recall")["c2"][0] == 0.0


def test_tied_confidences_on_the_full_set_fall_as_ultralytics_sorts_them() -> None:
    m = synthetic(7, ties=True)
    assert_as_ultralytics(m, np.ones((1, len(m.images)), np.int64))


@pytest.mark.parametrize("seed", range(4))
def test_a_resample_scores_as_ultralytics_on_the_repeated_images(seed: int) -> None:
    m = synthetic(10 + seed)
    weights = bootstrap.resample_weights(len(m.images), 8, seed)
    assert (weights == 0).any() and (weights > 1).any()
    extreme = np.zeros((2, len(m.images)), np.int64)
    extreme[0, 3] = 5  # one image drawn n times
    extreme[1, ::2] = 2  # half the images twice, the rest never
    assert_as_ultralytics(m, np.concatenate([weights, extreme]))


def test_a_resample_without_labels_scores_zero_as_ultralytics() -> None:
    m = synthetic(3)
    nothing = np.zeros((1, len(m.images)), np.int64)
    nothing[0, 7] = 3  # image 7 has no labels (i % 7 == 0), only predictions
    assert all(v[0] == 0.0 for v in bootstrap.scores(m, nothing).values())
    assert_as_ultralytics(m, nothing)


def test_resamples_scored_in_chunks_score_as_all_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    m = synthetic(8)
    weights = bootstrap.resample_weights(len(m.images), 23, seed=1)
    whole = bootstrap.scores(m, weights)
    monkeypatch.setattr(bootstrap, "CHUNK", 5)
    chunked = bootstrap.scores(m, weights)
    assert all((whole[key] == chunked[key]).all() for key in KEYS)


def test_resample_weights_are_seeded_draws_with_replacement() -> None:
    one = bootstrap.resample_weights(25, 50, seed=3)
    assert one.shape == (50, 25) and (one.sum(1) == 25).all()
    assert (one == bootstrap.resample_weights(25, 50, seed=3)).all()
    assert (one != bootstrap.resample_weights(25, 50, seed=4)).any()


def worse(m: bootstrap.Matches, seed: int) -> bootstrap.Matches:
    """The same predictions with half the true positives turned false."""
    rng = np.random.default_rng(seed)
    tp = tuple(t & (rng.random(len(t)) < 0.5)[:, None] for t in m.tp)
    return bootstrap.Matches(m.images, tp, m.conf, m.pred_cls, m.target_cls, m.names)


def test_the_interval_is_the_seeds() -> None:
    m, other = synthetic(1), worse(synthetic(1), 0)
    first = bootstrap.paired_interval(m, other, "mAP50_95", 0.95, 300, seed=5)
    assert first == bootstrap.paired_interval(m, other, "mAP50_95", 0.95, 300, seed=5)
    assert first != bootstrap.paired_interval(m, other, "mAP50_95", 0.95, 300, seed=6)
    assert first.to_dict() == {
        "metric": "mAP50_95",
        "confidence": 0.95,
        "resamples": 300,
        "seed": 5,
        "observed": first.observed,
        "low": first.low,
        "high": first.high,
    }
    full = np.ones((1, len(m.images)), np.int64)
    observed = bootstrap.scores(m, full)["mAP50_95"] - bootstrap.scores(other, full)["mAP50_95"]
    assert first.observed == round(float(observed[0]), 6)
    assert first.low <= first.observed <= first.high


def test_the_same_version_twice_differs_by_nothing() -> None:
    m = synthetic(2)
    for metric in KEYS:
        interval = bootstrap.paired_interval(m, m, metric, 0.9, 200, seed=0)
        assert (interval.observed, interval.low, interval.high) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("metric", ["mAP50", "mAP50_95"])
def test_more_true_positives_are_better_beyond_the_noise(metric: str) -> None:
    m = synthetic(4, images=60)
    interval = bootstrap.paired_interval(m, worse(m, 1), metric, 0.95, 400, seed=0)
    assert interval.low > 0
    assert bootstrap.paired_interval(worse(m, 1), m, metric, 0.95, 400, seed=0).high < 0


def test_the_versions_are_paired_by_image_name_not_order() -> None:
    m, other = synthetic(5), worse(synthetic(5), 2)
    order = np.random.default_rng(0).permutation(len(m.images))
    shuffled = bootstrap.Matches(
        images=tuple(other.images[i] for i in order),
        tp=tuple(other.tp[i] for i in order),
        conf=tuple(other.conf[i] for i in order),
        pred_cls=tuple(other.pred_cls[i] for i in order),
        target_cls=tuple(other.target_cls[i] for i in order),
        names=other.names,
    )
    assert bootstrap.paired_interval(m, shuffled, "mAP50", 0.95, 200, 1) == (
        bootstrap.paired_interval(m, other, "mAP50", 0.95, 200, 1)
    )


def test_versions_scored_on_different_images_are_refused() -> None:
    m = synthetic(6)
    other = bootstrap.Matches(
        ("images/other.jpg", *m.images[1:]), m.tp, m.conf, m.pred_cls, m.target_cls, m.names
    )
    with pytest.raises(ValueError, match=r"images/other\.jpg"):
        bootstrap.paired_interval(m, other, "mAP50", 0.95, 100, 0)
    with pytest.raises(ValueError, match="metric"):
        bootstrap.paired_interval(m, m, "fitness", 0.95, 100, 0)


def test_the_module_imports_no_torch() -> None:
    code = "import sys, retrainer_trainer.bootstrap; print('torch' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )


# ---- what validate keeps -------------------------------------------------------------------


def fabricate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Detections made from each batch's labels (jittered, some of the wrong class, some
    strays, none on every fifth image): an untrained model finds nothing worth counting, and the
    matching, counting and capture under test are Ultralytics' and validate's, unchanged."""
    import torch
    from ultralytics.models.yolo.detect import DetectionValidator

    preprocess = DetectionValidator.preprocess

    def keep_batch(self: Any, batch: dict[str, Any]) -> dict[str, Any]:
        self.fabricate_from = preprocess(self, batch)
        return self.fabricate_from

    def detections(self: Any, preds: Any) -> list[dict[str, torch.Tensor]]:
        batch = self.fabricate_from
        g = torch.Generator().manual_seed(len(self.metrics.stats["tp"]))
        h, w = batch["img"].shape[2:]
        out = []
        for si in range(len(batch["im_file"])):
            mine = batch["batch_idx"] == si
            boxes, conf, cls = [], [], []
            if (len(self.metrics.stats["tp"]) + si) % 5 != 4:
                for (x, y, bw, bh), c in zip(
                    batch["bboxes"][mine] * torch.tensor([w, h, w, h]),
                    batch["cls"][mine].view(-1),
                    strict=True,
                ):
                    for _ in range(2):
                        dx, dy, dw, dh = (torch.rand(4, generator=g) - 0.5) * 0.5 * bw
                        cx, cy, ww, hh = x + dx, y + dy, bw + dw, bh + dh
                        boxes.append([cx - ww / 2, cy - hh / 2, cx + ww / 2, cy + hh / 2])
                        conf.append(float(torch.rand(1, generator=g)))
                        wrong = float(torch.rand(1, generator=g)) < 0.15
                        cls.append(float((c + 1) % 3 if wrong else c))
                for _ in range(int(torch.randint(0, 6, (1,), generator=g))):
                    x0, y0 = (torch.rand(2, generator=g) * torch.tensor([w, h])).tolist()
                    size = 4 + 20 * float(torch.rand(1, generator=g))
                    boxes.append([x0, y0, x0 + size, y0 + size])
                    conf.append(0.6 * float(torch.rand(1, generator=g)))
                    cls.append(float(torch.randint(0, 3, (1,), generator=g)))
            out.append(
                {
                    "bboxes": torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
                    "conf": torch.tensor(conf, dtype=torch.float32),
                    "cls": torch.tensor(cls, dtype=torch.float32),
                    "extra": torch.zeros(len(boxes), 0),
                }
            )
        return out

    monkeypatch.setattr(DetectionValidator, "preprocess", keep_batch)
    monkeypatch.setattr(DetectionValidator, "postprocess", detections)


def test_validate_keeps_the_matches_its_metrics_are_counted_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ultralytics_checkpoint: Path
) -> None:
    fabricate(monkeypatch)
    pinned = holdout.load(
        shapes.generate_holdout(tmp_path / "holdout", seed=0, count=16),
        shapes.NAMES,
        tmp_path / "work" / "holdout",
    )
    result = training.validate(
        weights=ultralytics_checkpoint,
        data_yaml=pinned.data_yaml,
        imgsz=64,
        conf=0.001,
        iou=0.7,
        device="cpu",
        save_dir=tmp_path / "work" / "evaluation" / "challenger",
    )
    m = result.matches
    assert sorted(m.images) == [f"images/val/holdout_{i:04d}.png" for i in range(16)]
    assert sum(t.sum() for t in m.tp) > 0 and 0 < result.metrics["mAP50"] < 1
    full = np.ones((1, len(m.images)), np.int64)
    ours = {key: round(float(v[0]), 6) for key, v in bootstrap.scores(m, full).items()}
    assert ours == result.metrics
    per_class = {key: bootstrap.per_class(m, full, key) for key in KEYS}
    assert {
        name: {key: round(float(per_class[key][name][0]), 6) for key in KEYS}
        for name in result.per_class
    } == result.per_class
