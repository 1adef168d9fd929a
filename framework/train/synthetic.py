"""Synthetic anomalies for train-time validation: defects made from normal images alone.

Four kinds, cycled so each appears equally often; sizes and contrasts are drawn per image from a
seeded generator, and every defect comes with its pixel mask:

- ``cut-paste``: a rectangle cut from another normal image, rotated by a multiple of 90 degrees and
  pasted at a random place (CutPaste, Li et al. 2021): the wrong structure with the right colours;
- ``noise-blend``: a blob-shaped region (thresholded smooth noise) blended towards a colour one to
  three standard deviations of the image away (in the spirit of DRAEM, Zavrtanik et al. 2021);
- ``line``: a thin straight or bent line lighter or darker than the surroundings (a scratch or a hair);
- ``smear``: an ellipse blurred and shifted in brightness (a smudge, a dent, a drop of liquid).

Each kind comes at two scales, cycled too (``SCALES``): full size (4-15 % of the image width, contrast 1-3
standard deviations of the image), and about 60 % of that size with 70 % of that contrast. Real defects
are often smaller and fainter than the full-size ones, which a pooled, coarse model catches as easily
as a fine one; the smaller ones keep the estimate from saturating and reward the detail a model keeps.
A third, smaller scale (40 % of the size, 50 % of the contrast) made the estimate 0.07-0.15 too pessimistic on real
textures (docs/benchmarks.md). The generator depends on numpy and Pillow only, and the same ``seed`` gives the
same images.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = ("cut-paste", "noise-blend", "line", "smear")
SCALES = ((1.0, 1.0), (0.6, 0.7))  # (size, contrast) factors, each kind at each in turn


def make_anomalies(images: np.ndarray, donors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One synthetic defect on each of ``images`` (N, H, W, 3) 0..1; ``donors`` are normal images to cut from.

    Image ``i`` gets kind ``KINDS[i % 4]`` at scale ``SCALES[(i // 4) % 2]``. Returns the defective images
    (float32), their boolean masks (N, H, W) and the kind of each defect.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or not len(images):
        raise ValueError(f"images must be a non-empty (N, H, W, 3) array, got shape {images.shape}")
    rng = np.random.default_rng([seed, 4242])
    out = np.empty_like(images, dtype=np.float32)
    masks = np.zeros(images.shape[:3], bool)
    kinds = []
    for i, img in enumerate(images):
        kind = KINDS[i % len(KINDS)]
        size, strength = SCALES[(i // len(KINDS)) % len(SCALES)]
        donor = donors[int(rng.integers(len(donors)))]
        out[i], masks[i] = _defect(np.asarray(img, np.float32), kind, rng, donor, size, strength)
        kinds.append(kind)
    return out, masks, kinds


def _defect(
    img: np.ndarray, kind: str, rng: np.random.Generator, donor: np.ndarray, size: float = 1.0, strength: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """One defect of ``kind``; ``size`` scales its extent, ``strength`` its contrast (a cut-paste piece is
    blended in at ``strength`` below 1)."""
    h, w, _ = img.shape
    side = min(h, w) * size
    std = (float(img.reshape(-1, 3).std(0).mean()) + 0.02) * strength
    if kind == "cut-paste":
        ph, pw = (max(3, int(rng.uniform(0.06, 0.15) * side)) for _ in range(2))
        y0, x0 = int(rng.integers(0, donor.shape[0] - ph + 1)), int(rng.integers(0, donor.shape[1] - pw + 1))
        piece = np.rot90(donor[y0 : y0 + ph, x0 : x0 + pw], int(rng.integers(1, 4)))
        ph, pw = piece.shape[:2]
        y1, x1 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        out = img.copy()
        region = out[y1 : y1 + ph, x1 : x1 + pw]
        out[y1 : y1 + ph, x1 : x1 + pw] = piece if strength >= 1 else region + strength * (piece - region)
        mask = np.zeros((h, w), bool)
        mask[y1 : y1 + ph, x1 : x1 + pw] = True
        return out, mask
    if kind == "noise-blend":
        alpha = _blob(rng, h, w, rng.uniform(0.06, 0.15) * side)
        colour = img.reshape(-1, 3).mean(0) + rng.choice([-1, 1]) * rng.uniform(1.0, 3.0) * std * rng.uniform(
            0.5, 1.0, 3
        )
        alpha = alpha * rng.uniform(0.6, 1.0)
    elif kind == "line":
        layer = Image.new("L", (w * 4, h * 4), 0)
        d = ImageDraw.Draw(layer)
        length = rng.uniform(0.2, 0.45) * side * 4
        x, y, angle = rng.uniform(0.2 * w, 0.8 * w) * 4, rng.uniform(0.2 * h, 0.8 * h) * 4, rng.uniform(0, 2 * math.pi)
        points = [(x, y)]
        for _ in range(3):  # up to two bends
            angle += rng.uniform(-0.6, 0.6)
            x, y = x + math.cos(angle) * length / 3, y + math.sin(angle) * length / 3
            points.append((x, y))
        d.line(points, fill=255, width=max(4, int(rng.uniform(0.012, 0.03) * side * 4)))
        alpha = np.asarray(layer.resize((w, h), Image.Resampling.BOX), np.float32) / 255.0
        colour = img.reshape(-1, 3).mean(0) + rng.choice([-1, 1]) * rng.uniform(1.5, 3.0) * std
        alpha = alpha * rng.uniform(0.7, 1.0)
    elif kind == "smear":
        rx, ry = rng.uniform(0.04, 0.12, 2) * side
        cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
        layer = Image.new("L", (w, h), 0)
        ImageDraw.Draw(layer).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        alpha = np.asarray(layer.filter(ImageFilter.GaussianBlur(1.0)), np.float32) / 255.0
        blurred = (
            np.asarray(
                Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).filter(
                    ImageFilter.GaussianBlur(rng.uniform(1.5, 3.0))
                ),
                np.float32,
            )
            / 255.0
        )
        colour = blurred + rng.choice([-1, 1]) * rng.uniform(1.0, 2.0) * std
    else:
        raise ValueError(f"unknown synthetic defect {kind!r}; choose from {', '.join(KINDS)}")
    out = (1 - alpha[..., None]) * img + alpha[..., None] * colour
    return np.clip(out, 0, 1).astype(np.float32), alpha > 0.25


def _blob(rng: np.random.Generator, h: int, w: int, radius: float) -> np.ndarray:
    """A soft irregular blob (smooth noise inside a jittered ellipse) of about ``radius`` pixels."""
    cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rx, ry = radius * rng.uniform(0.6, 1.4, 2)
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    coarse = rng.random((6, 6)).astype(np.float32)
    noise = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BICUBIC))
    field = 1.0 - d + 0.6 * (noise - 0.5)
    return np.clip(field * 3.0, 0, 1).astype(np.float32)
