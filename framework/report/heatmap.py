"""Heatmap overlays of per-cell anomaly grids, drawn over the input image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from framework.metrics import upsample_grids

# (position, r, g, b) stops of a perceptually ordered blue -> cyan -> yellow -> red map
_STOPS = np.array([[0.0, 0.05, 0.05, 0.55], [0.35, 0.0, 0.75, 0.9], [0.65, 0.98, 0.9, 0.1], [1.0, 0.85, 0.05, 0.05]])


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in 0..1 to RGB in 0..1."""
    v = np.clip(values, 0.0, 1.0)
    return np.stack([np.interp(v, _STOPS[:, 0], _STOPS[:, i]) for i in (1, 2, 3)], axis=-1)


def overlay(image: np.ndarray, grid: np.ndarray, threshold: float, scale: int = 4, alpha: float = 0.45) -> Image.Image:
    """Blend a colour-mapped ``grid`` over ``image`` ((H, W, 3) in 0..1); outline cells above ``threshold``.

    Colours run from 0 (blue) to 1.5 x threshold (red), so a cell turns from yellow to red
    as it crosses the threshold, whatever the grid size (12x12 PatchCore, 5x5 GMM, ...).
    """
    h, w = image.shape[:2]
    H, W = h * scale, w * scale
    vmax = max(1.5 * float(threshold), 1e-12)
    heat = upsample_grids(grid[None], (H, W))[0] / vmax
    base = (
        np.asarray(
            Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize((W, H), Image.Resampling.NEAREST),
            dtype=np.float32,
        )
        / 255.0
    )
    mixed = (1 - alpha) * base + alpha * colormap(heat)
    out = Image.fromarray((mixed * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(out)
    gh, gw = grid.shape
    cell_h, cell_w = H / gh, W / gw
    for r, c in zip(*np.nonzero(grid > threshold)):
        draw.rectangle(
            [c * cell_w, r * cell_h, (c + 1) * cell_w - 1, (r + 1) * cell_h - 1], outline=(255, 0, 0), width=2
        )
    return out


def save_overlay(path: str | Path, image: np.ndarray, grid: np.ndarray, threshold: float) -> Path:
    """Write :func:`overlay` as a PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay(image, grid, threshold).save(path)
    return path
