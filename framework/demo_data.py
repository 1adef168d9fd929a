"""The bundled demo dataset: real textures from scikit-image with synthetic defects.

Each texture (brick, grass, gravel; real photographs shipped in scikit-image's wheel)
yields normal crops and crops with synthesised defects (scratch, spot, stain, cut-paste)
plus pixel masks, written both as a folder layout and as an Edge Impulse data directory.
Train and test crops are drawn at independent random positions over the whole texture
(a texture photo is one "product"; each crop a new instance of it), with random flips.

    python -m framework.demo_data --out demo/data
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from framework.errors import VadblocksError

TEXTURES = ("brick", "grass", "gravel")
# The photographs are grayscale; each gets the tint of the real material (a colour cast of
# the luminance), so a defect keeps the colour of what caused it (paint, rust, a foreign part).
TINTS = {"brick": (0.86, 0.52, 0.42), "grass": (0.52, 0.78, 0.32), "gravel": (0.80, 0.76, 0.70)}
DEFECTS = ("scratch", "spot", "stain", "cut-paste")
CROP = 128


def _texture(name: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError:
        raise VadblocksError("the demo dataset needs scikit-image (`pip install scikit-image`)") from None
    img = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
    if img.ndim == 2:
        tint = np.asarray(TINTS.get(name, (1.0, 1.0, 1.0)), np.float32)
        img = img[..., None] * (tint / tint.max())
    return img[..., :3]


def _crop(tex: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    r = int(rng.integers(0, tex.shape[0] - CROP + 1))
    c = int(rng.integers(0, tex.shape[1] - CROP + 1))
    patch = tex[r : r + CROP, c : c + CROP]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.5:
        patch = patch[::-1]
    im = Image.fromarray((patch * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def normal_crops(texture: str, n: int, size: int = 96, seed: int = 0) -> np.ndarray:
    """``n`` normal crops ``(n, size, size, 3)`` of ``texture``, drawn independently of the demo dataset.

    For training sets of any size (benchmarks/scaling.py); the demo's own test split still applies.
    """
    rng = np.random.default_rng([seed, 1000 + (TEXTURES.index(texture) if texture in TEXTURES else 99)])
    tex = _texture(texture)
    return np.stack([_crop(tex, rng, size) for _ in range(n)])


def soft_mask(size: int, draw_fn, blur: float) -> np.ndarray:
    """Draw at 4x resolution, downsample (antialiasing) and blur; returns alpha in 0..1."""
    big = Image.new("L", (size * 4, size * 4), 0)
    draw_fn(ImageDraw.Draw(big), 4)
    small = big.resize((size, size), Image.Resampling.BOX)
    if blur:
        small = small.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(small, dtype=np.float32) / 255.0


def add_defect(
    img: np.ndarray, kind: str, rng: np.random.Generator, other: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return (defective image, boolean mask) for one defect ``kind`` on ``img`` ((S, S, 3) in 0..1)."""
    s = img.shape[0]
    out = img.copy()
    cx, cy = rng.uniform(0.25 * s, 0.75 * s, size=2)
    if kind == "scratch":
        length, angle = rng.uniform(0.4 * s, 0.6 * s), rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        width = rng.uniform(0.03 * s, 0.045 * s)
        alpha = soft_mask(
            s,
            lambda d, k: d.line(
                [(cx - dx) * k, (cy - dy) * k, (cx + dx) * k, (cy + dy) * k], fill=255, width=int(width * k)
            ),
            0,
        )
        color = np.array([0.95, 0.95, 0.92]) if rng.random() < 0.5 else np.array([0.05, 0.05, 0.06])
    elif kind == "spot":
        r = rng.uniform(0.06 * s, 0.09 * s)
        alpha = soft_mask(
            s, lambda d, k: d.ellipse([(cx - r) * k, (cy - r) * k, (cx + r) * k, (cy + r) * k], fill=255), 0.5
        )
        color = np.array([0.02, 0.02, 0.02]) if rng.random() < 0.5 else np.array([0.98, 0.98, 0.98])
    elif kind == "stain":
        rx, ry = rng.uniform(0.07 * s, 0.12 * s, size=2)
        alpha = 0.75 * soft_mask(
            s, lambda d, k: d.ellipse([(cx - rx) * k, (cy - ry) * k, (cx + rx) * k, (cy + ry) * k], fill=255), 1.5
        )
        tint = rng.choice([[0.55, 0.3, 0.1], [0.2, 0.35, 0.6], [0.6, 0.1, 0.15]])
        color = np.asarray(tint) * img.mean()
        color = np.clip(color / max(color.max(), 1e-6) * 0.6, 0, 1)
    elif kind == "cut-paste":
        if other is None:
            raise VadblocksError("cut-paste needs a second texture")
        p = int(rng.uniform(0.25 * s, 0.35 * s))
        r0, c0 = (int(v) for v in rng.integers(0, other.shape[0] - p, size=2))
        patch = np.rot90(other[r0 : r0 + p, c0 : c0 + p], k=int(rng.integers(1, 4)))
        y0, x0 = int(np.clip(cy - p / 2, 0, s - p)), int(np.clip(cx - p / 2, 0, s - p))
        out[y0 : y0 + p, x0 : x0 + p] = patch
        mask = np.zeros((s, s), bool)
        mask[y0 : y0 + p, x0 : x0 + p] = True
        return out, mask
    else:
        raise VadblocksError(f"unknown defect kind {kind!r}; choose from {', '.join(DEFECTS)}")
    out = (1 - alpha[..., None]) * out + alpha[..., None] * color
    return np.clip(out, 0, 1).astype(np.float32), alpha > 0.25


def save_png(path: Path, arr: np.ndarray) -> None:
    """An image (H, W, 3) in 0..1 or a boolean mask as an 8-bit PNG, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8) if arr.dtype != bool else arr.astype(np.uint8) * 255
    Image.fromarray(data).save(path)


def make_texture_dataset(
    out: Path,
    texture: str,
    *,
    n_train: int = 200,
    n_test_good: int = 24,
    n_test_defect: int = 24,
    size: int = 96,
    seed: int = 0,
) -> dict[str, Path]:
    """Write ``out/<texture>`` (folder layout) and ``out/<texture>-ei`` (Edge Impulse data directory)."""
    rng = np.random.default_rng([seed, TEXTURES.index(texture) if texture in TEXTURES else 99])
    tex = _texture(texture)
    other_name = TEXTURES[(TEXTURES.index(texture) + 1) % len(TEXTURES)] if texture in TEXTURES else "brick"
    other = _texture(other_name)
    train = np.stack([_crop(tex, rng, size) for _ in range(n_train)])
    test_good = [_crop(tex, rng, size) for _ in range(n_test_good)]
    test_bad = []
    for i in range(n_test_defect):
        kind = DEFECTS[i % len(DEFECTS)]
        test_bad.append((kind, *add_defect(_crop(tex, rng, size), kind, rng, other)))
    return write_dataset(out / texture, out / f"{texture}-ei", train, test_good, test_bad)


def write_dataset(
    folder: Path, ei: Path, train: np.ndarray, good: list[np.ndarray], bad: list[tuple[str, np.ndarray, np.ndarray]]
) -> dict[str, Path]:
    """Write one dataset both ways: ``folder`` (train/good, test/good, test/<kind>, ground_truth/<kind>
    masks) and ``ei`` (an Edge Impulse data directory). ``bad`` holds (kind, image, mask) triples;
    images are (S, S, 3) float32 in 0..1."""
    for i, img in enumerate(train):
        save_png(folder / "train" / "good" / f"{i:03d}.png", img)
    for i, img in enumerate(good):
        save_png(folder / "test" / "good" / f"{i:03d}.png", img)
    for i, (kind, img, mask) in enumerate(bad):
        save_png(folder / "test" / kind / f"{i:03d}.png", img)
        save_png(folder / "ground_truth" / kind / f"{i:03d}_mask.png", mask)
    ei.mkdir(parents=True, exist_ok=True)
    x_test = np.stack(good + [img for _, img, _ in bad])
    size = train.shape[1]
    np.save(ei / "X_split_train.npy", train.reshape(len(train), -1).astype(np.float32))
    np.save(ei / "Y_split_train.npy", np.full((len(train), 1), 2, np.int64))  # 2 = "no anomaly"
    np.save(ei / "X_split_test.npy", x_test.reshape(len(x_test), -1).astype(np.float32))
    np.save(ei / "Y_split_test.npy", np.array([[2]] * len(good) + [[1]] * len(bad), np.int64))
    (ei / "train_input.json").write_text(
        json.dumps(
            {
                "classes": ["anomaly", "no anomaly"],
                "inputShapeString": f"({size}, {size}, 3)",
                "imageInputScaling": "0..1",
            },
            indent=2,
        )
        + "\n"
    )
    return {"folder": folder, "edge-impulse": ei}


def make_demo_dataset(out: str | Path, textures: tuple[str, ...] = TEXTURES, **kwargs) -> dict[str, dict[str, Path]]:
    """Write the demo dataset for each texture into ``out``; returns the paths per texture."""
    out = Path(out)
    return {t: make_texture_dataset(out, t, **kwargs) for t in textures}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="demo/data")
    ap.add_argument("--textures", default=",".join(TEXTURES))
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--test", type=int, default=24, help="normal and defective test images (each)")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    paths = make_demo_dataset(
        a.out,
        tuple(t for t in a.textures.split(",") if t),
        n_train=a.train,
        n_test_good=a.test,
        n_test_defect=a.test,
        size=a.size,
        seed=a.seed,
    )
    for t, p in paths.items():
        print(f"{t}: {p['folder']} (folder layout), {p['edge-impulse']} (Edge Impulse)")


if __name__ == "__main__":
    main()
