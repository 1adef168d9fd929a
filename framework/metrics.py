"""Model-testing metrics: F1 at a threshold, image AUROC and pixel AUROC."""

from __future__ import annotations

from typing import Any

import numpy as np

from framework.data import Split
from framework.errors import VadblocksError


def _interpolation_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D linear interpolation with half-pixel centres (align_corners=False)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    m = np.zeros((n_out, n_in), np.float64)
    np.add.at(m, (np.arange(n_out), i0), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), i1), frac)
    return m


def upsample_grids(grids: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinearly upsample (N, Gh, Gw) cell grids to (N, H, W) pixel maps (as torch's bilinear,
    align_corners=False), in numpy: model testing needs no torch."""
    g = np.asarray(grids, dtype=np.float64)
    wy = _interpolation_matrix(hw[0], g.shape[1])
    wx = _interpolation_matrix(hw[1], g.shape[2])
    return np.einsum("hi,nij,wj->nhw", wy, g, wx, optimize=True).astype(np.float32)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``labels`` (Mann-Whitney U; ties count half).

    Sorts the normal scores once and places each anomalous score among them (no argsort of all scores:
    a pixel AUROC over millions of pixels takes a fifth of the time).
    """
    y = np.asarray(labels, bool).reshape(-1)
    s = np.asarray(scores).reshape(-1)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        raise VadblocksError("AUROC needs both normal and anomalous samples")
    neg, pos = np.sort(s[~y]), s[y]
    below = np.searchsorted(neg, pos, "left")
    tied = np.searchsorted(neg, pos, "right") - below
    return float((below.sum(dtype=np.int64) + 0.5 * tied.sum(dtype=np.int64)) / (n_pos * n_neg))


def best_f1(labels: np.ndarray, scores: np.ndarray, max_fpr: float = 1.0) -> tuple[float, float] | None:
    """The highest F1 over every threshold (anomalous when ``score > threshold``) whose false positive rate
    is at most ``max_fpr``, and a threshold giving it (F1 0 above every score when none qualifies).

    For comparison only: it is chosen on the labels it is measured on. None without anomalous samples.
    """
    y = np.asarray(labels, bool).reshape(-1)
    s = np.asarray(scores, np.float64).reshape(-1)
    positives = int(y.sum())
    if not positives:
        return None
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # the last index of each run of equal scores
    k = ends + 1  # flagging the top k images
    tp = np.cumsum(y)[ends]
    f1 = 2 * tp / (k + positives)  # 2tp / (2tp + fp + fn) with fp + tp = k, fn = P - tp
    negatives = len(y) - positives
    if max_fpr < 1.0 and negatives:
        f1 = np.where((k - tp) <= max_fpr * negatives, f1, -1.0)
        if f1.max() <= 0:
            return 0.0, float(s[0] + max(1e-6, abs(s[0]) * 1e-6))
    i = int(np.argmax(f1))
    below = s[ends[i] + 1] if ends[i] + 1 < len(s) else s[-1] - max(1e-6, abs(s[-1]) * 1e-6)
    return float(f1[i]), float((s[ends[i]] + below) / 2)


def evaluate(grids: np.ndarray, scores: np.ndarray, split: Split, threshold: float) -> dict[str, Any]:
    """Metrics of one test split: ``{"f1", "fpr", "recall", "best_f1", "best_threshold", "image_auroc",
    "pixel_auroc", "threshold", "counts", "n_images"}``.

    Positives are images labelled ``anomaly``; an image is predicted anomalous when its
    score exceeds ``threshold``. AUROCs are None when the split lacks one of the classes
    (or, for pixels, lacks masks).
    """
    if len(split) == 0:
        raise VadblocksError(
            "the test split is empty: model testing needs labelled test images "
            "(X_split_test.npy / Y_split_test.npy, or test/good and test/<defect>/ folders)"
        )
    y = split.anomalous.astype(bool)
    pred = scores > threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    tn = int((~pred & ~y).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None
    both = y.any() and (~y).any()
    image_auroc = auroc(y, scores) if both else None
    pixel_auroc = None
    if split.masks is not None and split.has_mask is not None and split.has_mask.any():
        sel = split.has_mask
        truth = split.masks[sel].reshape(-1)
        if truth.any() and (~truth).any():
            pix = upsample_grids(grids[sel], split.masks.shape[1:3]).reshape(-1)
            pixel_auroc = auroc(truth, pix)
    best = best_f1(y, scores)
    return {
        "f1": None if f1 is None else float(f1),
        "fpr": fp / (fp + tn) if fp + tn else None,  # share of normal images flagged
        "recall": tp / (tp + fn) if tp + fn else None,  # share of anomalies caught
        "best_f1": None if best is None else best[0],
        "best_threshold": None if best is None else best[1],
        "image_auroc": image_auroc,
        "pixel_auroc": pixel_auroc,
        "threshold": float(threshold),
        "counts": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        "n_images": int(len(split)),
    }
