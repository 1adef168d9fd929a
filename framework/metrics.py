"""Model-testing metrics: F1 at a threshold, image AUROC and pixel AUROC."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from framework.data import Split
from framework.errors import VadblocksError


def upsample_grids(grids: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinearly upsample (N, Gh, Gw) cell grids to (N, H, W) pixel maps."""
    t = torch.from_numpy(np.ascontiguousarray(grids, dtype=np.float32))[:, None]
    return F.interpolate(t, size=hw, mode="bilinear", align_corners=False)[:, 0].numpy()


def evaluate(grids: np.ndarray, scores: np.ndarray, split: Split, threshold: float) -> dict[str, Any]:
    """Metrics of one test split: ``{"f1", "image_auroc", "pixel_auroc", "threshold", "counts", "n_images"}``.

    Positives are images labelled ``anomaly``; an image is predicted anomalous when its
    score exceeds ``threshold``. AUROCs are None when the split lacks one of the classes
    (or, for pixels, lacks masks).
    """
    if len(split) == 0:
        raise VadblocksError("the test split is empty: model testing needs labelled test images "
                             "(X_split_test.npy / Y_split_test.npy, or test/good and test/<defect>/ folders)")
    y = split.anomalous.astype(bool)
    pred = scores > threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    tn = int((~pred & ~y).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None
    both = y.any() and (~y).any()
    image_auroc = float(roc_auc_score(y, scores)) if both else None
    pixel_auroc = None
    if split.masks is not None and split.has_mask is not None and split.has_mask.any():
        sel = split.has_mask
        truth = split.masks[sel].reshape(-1)
        if truth.any() and (~truth).any():
            pix = upsample_grids(grids[sel], split.masks.shape[1:3]).reshape(-1)
            pixel_auroc = float(roc_auc_score(truth, pix))
    return {
        "f1": None if f1 is None else float(f1),
        "image_auroc": image_auroc,
        "pixel_auroc": pixel_auroc,
        "threshold": float(threshold),
        "counts": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        "n_images": int(len(split)),
    }
