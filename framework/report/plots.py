"""Model-testing plots as PNG files (matplotlib, headless): ROC curve and score distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from framework.data import Split


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    y = np.asarray(labels, bool)
    order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
    s, y = np.asarray(scores)[order], y[order]
    last = np.r_[s[1:] != s[:-1], True]  # the end of each run of equal scores
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    return np.r_[0.0, fp / max(1, (~y).sum())], np.r_[0.0, tp / max(1, y.sum())]


def write_plots(
    out_dir: str | Path,
    split: Split,
    scores: np.ndarray,
    threshold: float,
    train_scores: list[float] | None = None,
    image_auroc: float | None = None,
) -> list[Path]:
    """Write ``roc.png`` (when both classes are present) and ``scores.png`` into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = split.anomalous.astype(bool)
    written = []
    if y.any() and (~y).any():
        fpr, tpr = roc_points(y, scores)
        pred = scores > threshold
        fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
        ax.plot(fpr, tpr, color="#2b59c3", lw=2, label=f"AUROC {image_auroc:.3f}" if image_auroc is not None else None)
        ax.plot([0, 1], [0, 1], ls="--", color="#bbb", lw=1)
        ax.plot(
            [(pred & ~y).sum() / (~y).sum()],
            [(pred & y).sum() / y.sum()],
            "o",
            color="#111",
            label=f"threshold {threshold:.4g}",
        )
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "roc.png")
        plt.close(fig)
        written.append(out / "roc.png")
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    groups = [("normal test", scores[~y], "#3a7bd5"), ("anomalous test", scores[y], "#d64545")]
    if train_scores:
        groups.append(("training", np.asarray(train_scores), "#888888"))
    values = np.concatenate([g[1] for g in groups] + [[threshold]])
    bins = np.linspace(values.min(), values.max(), 31)
    for name, v, colour in groups:
        if len(v):
            ax.hist(
                v,
                bins=bins,
                alpha=0.55,
                color=colour,
                label=f"{name} ({len(v)})",
                weights=np.full(len(v), 1.0 / len(v)),
            )
    ax.axvline(threshold, color="#111", lw=2, label="threshold")
    ax.set(xlabel="anomaly score", ylabel="fraction of images", title="Score distributions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "scores.png")
    plt.close(fig)
    written.append(out / "scores.png")
    return written
