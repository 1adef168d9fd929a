"""Model testing you can look at: one self-contained HTML page per model and test set.

The page (``report_page.html``, scripts and styles inline) receives the test images as small JPEG
thumbnails, their cell grids as numbers, ground-truth mask outlines, and the model's metadata, and
draws everything itself: moving the threshold recomputes labels, counts, precision, recall and F1
in the page with the CLI's rule (anomalous when ``score > threshold``). No network, no files beside it.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from framework.data import Split
from framework.metrics import evaluate
from framework.outputs import atomic_write_text
from framework.portable.formats import RUNTIME_FILES

PAGE = Path(__file__).with_name("report_page.html")
DATA_MARK = "/*__REPORT_DATA__*/"
THUMB_MAX = 128  # longest side of an embedded image (the page scales it up)
JPEG_QUALITY = 85
POLICY_TEXT = {"max": "the maximum anomaly score over the training images"}


def _thumb(image: np.ndarray) -> Image.Image:
    im = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    scale = min(1.0, THUMB_MAX / max(im.size))
    if scale < 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.BILINEAR)
    return im


def _data_url(im: Image.Image, fmt: str, **kwargs: Any) -> str:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def mask_outline(mask: np.ndarray, size: tuple[int, int]) -> str:
    """A transparent PNG (data URL) of ``size`` (w, h) with the boundary of ``mask`` drawn opaque."""
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 0
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    edge = m & ~inner
    rgba = np.zeros(edge.shape + (4,), np.uint8)
    rgba[edge] = (60, 255, 60, 255)
    return _data_url(Image.fromarray(rgba, "RGBA"), "PNG", optimize=True)


def defect_type(name: str, anomalous: bool) -> str:
    """The defect folder of a folder-layout test image (``test/<defect>/x.png``), else its label."""
    parts = Path(name).parts
    if len(parts) >= 3 and parts[0] == "test":
        return parts[1]
    return "anomaly" if anomalous else "good"


def report_data(
    meta: dict[str, Any],
    split: Split,
    grids: np.ndarray,
    scores: np.ndarray,
    *,
    model_dir: str | Path,
    runtime: str,
    latency_ms: float | None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Everything the page shows, as one JSON-serialisable dict."""
    suggested = float(meta["nominalThresholdScore"])
    metrics = evaluate(grids, scores, split, suggested if threshold is None else threshold)
    samples = []
    for i in range(len(split)):
        thumb = _thumb(split.images[i])
        mask = None
        if split.masks is not None and split.has_mask is not None and split.has_mask[i] and split.anomalous[i]:
            mask = mask_outline(split.masks[i], thumb.size)
        samples.append(
            {
                "name": split.names[i],
                "anomalous": bool(split.anomalous[i]),
                "defect": defect_type(split.names[i], bool(split.anomalous[i])),
                "score": float(scores[i]),
                "grid": [float(f"{v:.6g}") for v in np.asarray(grids[i]).reshape(-1)],
                "image": _data_url(thumb, "JPEG", quality=JPEG_QUALITY),
                "mask": mask,
            }
        )
    model_dir = Path(model_dir)
    files = [
        {"file": p.name, "bytes": p.stat().st_size}
        for p in sorted(model_dir.iterdir())
        if p.is_file() and not p.name.startswith(".")
    ]
    policy = meta.get("thresholdPolicy") or {"policy": "max"}  # models before threshold policies: max
    train_scores = meta.get("trainScores") or []
    return {
        "model": {
            "directory": str(model_dir),
            "scorer": meta.get("scorer"),
            "backbone": meta.get("backbone"),
            "parameters": meta.get("parameters", {}),
            "version": meta.get("version"),
            "inputShape": meta["inputShape"],
            "gridSize": meta["gridSize"],
            "runtime": runtime,
            "runtimeFile": RUNTIME_FILES.get(runtime),
            "latencyMs": latency_ms,
            "files": files,
            "numTrainImages": meta.get("numTrainImages"),
            "validation": meta.get("validation"),
            "timings": meta.get("timings", {}),
        },
        "threshold": {
            "suggested": suggested,
            "policy": policy["policy"],
            "policyText": f"{policy['policy']}; {policy.get('how') or POLICY_TEXT.get(policy['policy'], '')}",
            "maxTrainingScore": meta.get("maxTrainingScore", (meta.get("trainScoreRange") or [None, None])[1]),
            "initial": suggested if threshold is None else float(threshold),
        },
        "trainScores": train_scores,
        "metrics": {"image_auroc": metrics["image_auroc"], "pixel_auroc": metrics["pixel_auroc"]},
        "samples": samples,
    }


def render(data: dict[str, Any]) -> str:
    """The page with ``data`` embedded (inside a JSON script element; ``</`` escaped)."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    page = PAGE.read_text()
    return page.replace(DATA_MARK, payload)


def write_test_report(path: str | Path, run: Any, threshold: float | None = None) -> Path:
    """The page of a :class:`framework.serve.testing.TestRun` (its predictions, metadata and runtime latency),
    opened at ``threshold`` (default: the suggested one)."""
    data = report_data(
        run.meta,
        run.split,
        run.grids,
        run.scores,
        model_dir=run.model_dir,
        runtime=run.runtime,
        latency_ms=run.latency_ms(),
        threshold=threshold,
    )
    return write_report(path, data)


def write_report(path: str | Path, data: dict[str, Any]) -> Path:
    """Write the page to ``path`` (atomically: a temporary file renamed into place)."""
    return atomic_write_text(path, render(data))
