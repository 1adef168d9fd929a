"""Threshold policies: how the suggested threshold (``nominalThresholdScore``) is chosen without labels.

- ``max``: the largest training score (Edge Impulse's definition; always kept as ``maxTrainingScore``).
  Training scores are leave-one-image-out where the scorer supports it, but near-duplicate training
  images still make them optimistic, so unseen normal images often land above it.
- ``fpr``: split conformal prediction: the ``ceil((n + 1)(1 - rate))``-th smallest of ``n`` held-out
  normal scores (validation's groups of similar images and groups of near-duplicates, each held out in
  turn, or its random folds for scorers that cannot forget images; the training scores when validation
  is off). A new normal image exchangeable with the held-out ones exceeds it with probability at most
  ``rate``. A held-out group is scored by the model with its images' memory dropped, which also uncovers
  what their memory shared with the kept images, so these scores run high (on EfficientNet-Lite0 far
  above unseen normal images). Where validation also scored the groups with that memory refilled from the
  kept images (``substituted_scores``: the kept patches nearest to the dropped ones, picked knowing the
  held-out images, so these run low), the bound is never above their ``1 - rate * TAIL_FRACTION``
  quantile.
- ``f1``: the threshold with the best F1 on validation's held-out normal images against their synthetic
  anomalies (needs validation), never below the ``fpr`` policy's threshold: on a texture where the
  synthetic anomalies barely separate, the best F1 on a balanced set is to flag everything, and the
  bound keeps the false alarms at ``rate`` by construction while catching what it can above it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from framework.errors import VadblocksError
from framework.metrics import best_f1
from framework.training_params import THRESHOLD_POLICIES

POLICIES = THRESHOLD_POLICIES
TAIL_FRACTION = (
    0.1  # the refilled groups' scores cap the bound at this fraction of the rate (0.10: their 0.99 quantile)
)


def conformal_quantile(normal_scores: np.ndarray, rate: float) -> float:
    """The ``ceil((n + 1)(1 - rate))``-th smallest score (the largest one when too few scores are held out)."""
    s = np.sort(np.asarray(normal_scores, np.float64))
    if not len(s):
        raise VadblocksError("the fpr threshold policy needs held-out normal scores; none were given")
    k = min(math.ceil((len(s) + 1) * (1.0 - rate)), len(s))
    return float(s[k - 1])


def suggest(policy: str, rate: float, train_scores: np.ndarray, validation: dict[str, Any] | None) -> tuple[float, str]:
    """The suggested threshold of ``policy`` and a sentence saying how it was obtained.

    ``validation`` is the result of :func:`framework.train.validation.validate` (None when validation is off):
    its ``strict`` held-out normal and synthetic anomaly scores, and its ``grouped`` normal scores.
    """
    if policy == "max":
        return float(np.max(train_scores)), f"maximum of {len(train_scores)} training scores"
    if policy not in POLICIES:
        raise VadblocksError(f"--threshold-policy: {policy!r} is not valid; expected one of {', '.join(POLICIES)}")
    if validation is None:
        if policy == "f1":
            raise VadblocksError(
                "--threshold-policy f1 needs validation (it picks the threshold on held-out images "
                "with synthetic anomalies): use --validation 1, or --threshold-policy fpr or max"
            )
        return (
            conformal_quantile(train_scores, rate),
            f"conformal {1 - rate:.3g} quantile of {len(train_scores)} training scores (target FPR {rate:g}; "
            "validation off)",
        )
    grouped = validation.get("grouped")
    held = grouped["normal_scores"] if grouped else validation["strict"]["normal_scores"]
    bound = conformal_quantile(held, rate)
    bound_how = (
        f"conformal {1 - rate:.3g} quantile of {len(held)} held-out normal scores "
        + (f"({grouped['groups']} groups of similar or near-duplicate images held out in turn; " if grouped else "(")
        + f"target FPR {rate:g})"
    )
    refilled = grouped.get("substituted_scores") if grouped else None
    if refilled is not None and len(refilled) and conformal_quantile(refilled, rate * TAIL_FRACTION) < bound:
        bound = conformal_quantile(refilled, rate * TAIL_FRACTION)
        bound_how = (
            f"conformal {1 - rate * TAIL_FRACTION:.3g} quantile of the same {len(refilled)} held-out normal images "
            "scored with their memory refilled from the kept images, below the "
            + bound_how.replace(" (", " with it dropped (", 1)
        )
    if policy == "fpr":
        return bound, bound_how
    normal, anomalies = validation["strict"]["normal_scores"], validation["strict"]["anomaly_scores"]
    labels = np.r_[np.zeros(len(normal), bool), np.ones(len(anomalies), bool)]
    _, best = best_f1(labels, np.r_[normal, anomalies])  # type: ignore[misc]
    how = f"best F1 on {len(normal)} held-out normal images and {len(anomalies)} synthetic anomalies"
    if best >= bound:
        return best, f"{how} (above the false positive bound, the {bound_how})"
    return bound, f"{bound_how}: the {how} lay below it"
