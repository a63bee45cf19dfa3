"""A paired bootstrap over holdout images, from the per-image matches validation computed.

A resample draws the holdout's images with replacement; drawn k times, an image counts k times.
Both versions are scored on the same draws, so the interval is one of differences, and no image
goes through a model again: Ultralytics already decided, per image, which predictions are true
positives at each IoU threshold (`Matches`); only the counting is redone, with multiplicities.

The counting is Ultralytics' (`ap_per_class`, `Metric.mean_results`) over the drawn images laid
end to end: k copies of a prediction are k consecutive steps of its class's curves (AP and
np.interp see its first copy as well as its last), a prediction drawn 0 times is no point at
all. What no draw changes is computed once per class: its predictions' order, where the
confidence grid falls among them. Each resample is one row of the arrays; nothing loops over them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from retrainer_contract import gates
from retrainer_contract import metrics as metric_keys

__all__ = ["Matches", "paired_interval", "per_class", "resample_weights", "scores"]

EPS = 1e-16  # ap_per_class's
AP_X = np.linspace(0, 1, 101)  # compute_ap's recall points (COCO)
GRID = np.linspace(0, 1, 1000)  # ap_per_class's confidence grid
_STEP = np.diff(AP_X)
_TRAPZ = (np.append(_STEP, 0.0) + np.insert(_STEP, 0, 0.0)) / 2  # compute_ap's trapezoid weights
_W = np.insert(np.cumsum(_TRAPZ), 0, 0.0)  # their prefix sums, and of weight * recall
_WX = np.insert(np.cumsum(_TRAPZ * AP_X), 0, 0.0)
CHUNK = 200  # resamples at once at most; fewer when a row is wide (many predictions or classes)
CELLS = 4_000_000  # float64 cells of one working array (32 MB) that decide how many fewer
_COLUMNS = {key: i for i, key in enumerate(metric_keys.KEYS)}  # p, r, mAP50, mAP50_95


@dataclass(frozen=True, eq=False)
class Matches:
    """What validation decided, per image in validation order (DetMetrics.update_stats)."""

    images: tuple[str, ...] = ()  # image files, relative to the dataset folder
    tp: tuple[np.ndarray, ...] = ()  # (n_pred, 10) bool: true positive at IoU 0.5:0.95
    conf: tuple[np.ndarray, ...] = ()
    pred_cls: tuple[np.ndarray, ...] = ()
    target_cls: tuple[np.ndarray, ...] = ()
    names: tuple[str, ...] = ()  # class names by id


@dataclass(frozen=True)
class _Class:
    """One labelled class's predictions, best first, and what no resample changes."""

    label: int
    image: np.ndarray  # (P,) each prediction's image
    conf: np.ndarray  # (P,) descending
    tp50: np.ndarray  # (P,) true positive at IoU 0.5
    hits: np.ndarray  # the true positives' positions at IoU 0.5, then at 0.55, ... 0.95
    starts: np.ndarray  # (11,) where each threshold's run starts in `hits`, and the end
    labels: np.ndarray  # (n_images,) this class's labels per image
    grid: np.ndarray  # (1000,) the last prediction with conf >= each GRID point, or -1


def _classes(m: Matches) -> list[_Class]:
    conf = np.concatenate([np.zeros(0), *m.conf])
    # Ultralytics' own sort on the same array (not stable): ties fall as they fall there.
    order = np.argsort(-np.concatenate(m.conf) if m.conf else conf)
    image = np.repeat(np.arange(len(m.images)), [len(c) for c in m.conf])[order]
    tp = np.concatenate([np.zeros((0, 10), bool), *m.tp])[order]
    pred, conf = np.concatenate([np.zeros(0), *m.pred_cls])[order], conf[order]
    target = np.concatenate([np.zeros(0), *m.target_cls])
    target_image = np.repeat(np.arange(len(m.images)), [len(t) for t in m.target_cls])
    out = []
    for c in np.unique(target):  # a class no image is labelled with never counts
        mine = pred == c
        out.append(
            _Class(
                label=int(c),
                image=image[mine],
                conf=conf[mine],
                tp50=tp[mine, 0].astype(np.float64),
                hits=np.concatenate([np.flatnonzero(column) for column in tp[mine].T]),
                starts=np.insert(np.cumsum(tp[mine].sum(0)), 0, 0),
                labels=np.bincount(target_image[target == c], minlength=len(m.images)),
                grid=np.searchsorted(-conf[mine], -GRID, side="right") - 1,
            )
        )
    return out


def _ap(cls: _Class, w: np.ndarray, N: np.ndarray, d: np.ndarray) -> np.ndarray:
    """compute_ap (B, 10) from the true positives' counts alone; `w` (B, P) draws, `N` (B, P)
    predictions counted so far, `d` (B, 1) labels drawn (+ eps).

    Precision rises along a true positive's copies and falls along a false positive's, so the
    envelope at a true positive is the best precision at a true positive from there on. The
    recall points between two true positives' recalls see np.interp's line from the last point
    before the second one's first copy to that copy, then its flat envelope: the trapezoid sum
    is a sum over true positives of those two pieces, with prefix sums of its weights.
    Each threshold's true positives are one segment of the (B, S) arrays.
    """
    B, S, lengths = w.shape[0], cls.hits.size, np.diff(cls.starts)
    ap = np.zeros((B, lengths.size))
    if S == 0:
        return ap
    drawn = w[:, cls.hits]
    total = np.insert(np.cumsum(drawn, axis=1), 0, 0.0, axis=1)
    T = total[:, 1:] - np.repeat(total[:, cls.starts[:-1]], lengths, axis=1)  # per segment
    N = N[:, cls.hits]
    env = np.divide(T, N, out=np.zeros_like(T), where=N > 0)
    for a, b in zip(cls.starts[:-1], cls.starts[1:], strict=True):
        env[:, a:b] = np.maximum.accumulate(env[:, a:b][:, ::-1], axis=1)[:, ::-1]
    # The last point before the first copy: its precision (1: compute_ap's first sentinel).
    left = np.maximum(np.divide(T - drawn, N - drawn, out=np.ones_like(T), where=drawn < N), env)
    x0, x1 = (T - drawn) / d, (T - drawn + 1) / d  # its recall, the first copy's
    slope = (env - left) / (x1 - x0)
    reached = np.searchsorted(AP_X, T / d, side="left")  # first recall point at or above T/n
    r0 = np.insert(reached[:, :-1], 0, 0, axis=1)
    r0[:, cls.starts[:-1][lengths > 0]] = 0
    s0 = np.clip(np.searchsorted(AP_X, x1, side="left"), r0, reached)  # the line ends at x1
    flat = env * (_W[reached] - _W[s0])
    line = left * (_W[s0] - _W[r0]) + slope * (_WX[s0] - _WX[r0] - x0 * (_W[s0] - _W[r0]))
    ap[:, lengths > 0] = np.add.reduceat(flat + line, cls.starts[:-1][lengths > 0], axis=1)
    return ap


def _curves(cls: _Class, w: np.ndarray, N: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Precision and recall (2, B, 1000) on the confidence grid: np.interp's formula between the
    last drawn prediction at or above x and the first copy of the first one drawn below it."""
    P = w.shape[1]
    T = np.cumsum(w * cls.tp50, axis=1)
    index = np.arange(P)
    last = np.maximum.accumulate(np.where(w > 0, index, -1), axis=1)
    after = np.minimum.accumulate(np.where(w > 0, index, P)[:, ::-1], axis=1)[:, ::-1]
    at = np.maximum(cls.grid, 0)
    j0 = np.where(cls.grid >= 0, last[:, at], -1)
    j1 = np.where(cls.grid + 1 < P, after[:, np.minimum(cls.grid + 1, P - 1)], P)
    t0, n0, step = T[:, at], N[:, at], np.append(cls.tp50, 0.0)[j1]
    xp = np.append(-cls.conf, 0.0)
    x0 = xp[j0]
    keep = (x0 == -GRID) | (j1 == P)  # np.interp answers y0 there
    with np.errstate(divide="ignore", invalid="ignore"):
        gap, dist = xp[j1] - x0, -GRID - x0
        out = []
        for y0, y1, left in (
            (t0 / n0, (t0 + step) / (n0 + 1), 1.0),
            (t0 / d, (t0 + step) / d, 0.0),
        ):
            y = np.where(keep, y0, (y1 - y0) / gap * dist + y0)
            out.append(np.where(j0 < 0, left, y))
    return np.where(N[:, -1:] > 0, np.stack(out), 0.0)  # none drawn: ap_per_class's zeros


def _smooth_argmax(y: np.ndarray) -> np.ndarray:
    """argmax of smooth(y, 0.1) per row: one np.convolve over the padded rows end to end, so
    each window is summed as smooth() sums it (an argmax can turn on the last bit)."""
    B, n = y.shape
    half = (round(n * 0.1 * 2) // 2 + 1) // 2
    padded = np.concatenate([np.repeat(y[:, :1], half, 1), y, np.repeat(y[:, -1:], half, 1)], 1)
    smoothed = np.convolve(padded.ravel(), np.ones(2 * half + 1) / (2 * half + 1), mode="valid")
    return smoothed[(np.arange(B) * padded.shape[1])[:, None] + np.arange(n)].argmax(axis=1)


def _rows(classes: list[_Class], weights: np.ndarray, curves: bool) -> tuple[np.ndarray, ...]:
    """Per class (B, C, 4) precision, recall, AP50, AP50-95 (NaN precision and recall without
    `curves`: only they need the confidence curves), and (B, C) which classes have labels."""
    B, C = weights.shape[0], len(classes)
    draws = weights.astype(np.float64)
    ap, pr = np.zeros((B, C, 10)), np.zeros((2, B, C, GRID.size) if curves else (2, B, C, 0))
    labelled = np.zeros((B, C), bool)
    for c, cls in enumerate(classes):
        n = (weights @ cls.labels).astype(np.float64)
        labelled[:, c] = n > 0
        if cls.conf.size:
            d = np.where(n > 0, n, 1.0)[:, None] + EPS  # no labels drawn: left out anyway
            w = draws[:, cls.image]
            N = np.cumsum(w, axis=1)
            ap[:, c] = _ap(cls, w, N, d)
            if curves:
                pr[:, :, c] = _curves(cls, w, N, d)
    p = r = np.full((B, C), np.nan)
    if curves:
        f1 = 2 * pr[0] * pr[1] / (pr[0] + pr[1] + EPS)
        f1 = np.where(labelled[:, :, None], f1, 0.0).sum(1)  # f1_curve.mean(0): classes in order
        best = _smooth_argmax(f1 / np.maximum(labelled.sum(1), 1)[:, None])
        p, r = np.take_along_axis(pr, best[None, :, None, None], axis=3)[..., 0]
    return np.stack([p, r, ap[:, :, 0], ap.mean(2)], axis=2), labelled


def _score(classes: list[_Class], weights: np.ndarray, curves: bool = True) -> tuple:
    """_rows over chunks of resamples, as many at once as keep the working arrays small."""
    wide = max([c.conf.size for c in classes] + [len(classes) * GRID.size * curves, 1])
    rows = max(1, min(CHUNK, CELLS // wide))
    parts = [_rows(classes, weights[i : i + rows], curves) for i in range(0, len(weights), rows)]
    return tuple(np.concatenate(part) for part in zip(*parts, strict=True))


def _means(classes: list[_Class], weights: np.ndarray, curves: bool = True) -> np.ndarray:
    """Metric.mean_results per resample (B, 4): means over the classes with labels drawn."""
    values, labelled = _score(classes, weights, curves)
    means = np.where(labelled[:, :, None], values, 0.0).sum(1)
    return means / np.maximum(labelled.sum(1), 1)[:, None]  # no class: 0, as Metric says


def _checked(m: Matches, weights: np.ndarray) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.int64)
    if weights.ndim != 2 or weights.shape[1] != len(m.images) or not len(weights):
        raise ValueError(f"weights must be (resamples, {len(m.images)}), not {weights.shape}")
    return weights


def scores(m: Matches, weights: np.ndarray) -> dict[str, np.ndarray]:
    """The four metrics (B,) of `m` on B resamples; `weights` (B, n_images) counts the draws."""
    means = _means(_classes(m), _checked(m, weights))
    return {key: means[:, i] for key, i in _COLUMNS.items()}


def per_class(m: Matches, weights: np.ndarray, metric: str) -> dict[str, np.ndarray]:
    """`metric` (B,) of each class labelled in `m`; NaN where a resample drew none of its labels."""
    classes = _classes(m)
    values, labelled = _score(classes, _checked(m, weights), curves=_COLUMNS[metric] < 2)
    column = np.where(labelled, values[:, :, _COLUMNS[metric]], np.nan)
    return {
        m.names[c.label] if c.label < len(m.names) else str(c.label): column[:, i]
        for i, c in enumerate(classes)
    }


def resample_weights(n_images: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_images) draw counts: each row draws n_images images with replacement."""
    drawn = np.random.default_rng(seed).integers(0, n_images, size=(resamples, n_images))
    drawn += np.arange(resamples)[:, None] * n_images
    return np.bincount(drawn.ravel(), minlength=resamples * n_images).reshape(resamples, -1)


def _paired(ours: Matches, theirs: Matches) -> np.ndarray:
    """Where each of their images is among ours: both must have scored the same images."""
    if len(set(ours.images)) < len(ours.images) or len(set(theirs.images)) < len(theirs.images):
        raise ValueError("an image name repeats within one validation: cannot pair the images")
    mine, other = set(ours.images), set(theirs.images)
    if mine != other or not mine:
        raise ValueError(
            "the two versions were not scored on the same images: only the challenger's "
            f"{sorted(mine - other)[:5]} ({len(mine - other)}), only the champion's "
            f"{sorted(other - mine)[:5]} ({len(other - mine)})"
        )
    where = {name: i for i, name in enumerate(ours.images)}
    return np.array([where[name] for name in theirs.images])


def paired_interval(
    ours: Matches, theirs: Matches, metric: str, confidence: float, resamples: int, seed: int
) -> gates.Interval:
    """ours - theirs on `metric`, both counted on the same `resamples` draws of the images."""
    if metric not in _COLUMNS or not 0 < confidence < 1 or resamples < 1:
        raise ValueError(
            f"metric must be one of {', '.join(_COLUMNS)} (not {metric!r}), confidence in (0, 1)"
            f" (not {confidence}), resamples at least 1 (not {resamples})"
        )
    theirs_order = _paired(ours, theirs)
    mine, other, column = _classes(ours), _classes(theirs), _COLUMNS[metric]
    curves = column < 2  # the mAPs need no confidence curves: the bulk of the work

    def difference(weights: np.ndarray) -> np.ndarray:
        ours_ = _means(mine, weights, curves)[:, column]
        return ours_ - _means(other, weights[:, theirs_order], curves)[:, column]

    observed = difference(np.ones((1, len(ours.images)), np.int64))[0]
    diffs = difference(resample_weights(len(ours.images), resamples, seed))
    low, high = np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
    return gates.Interval(
        metric=metric,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        observed=round(float(observed), 6),
        low=round(float(low), 6),
        high=round(float(high), 6),
    )
