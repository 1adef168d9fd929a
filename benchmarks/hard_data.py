"""A development benchmark that does not saturate: subtle defects on real and procedural materials.

    python benchmarks/hard_data.py --out bench/hard            (writes every material, seeded)

Materials: the three real texture photographs shipped with scikit-image (brick, grass, gravel, tinted)
and five procedural ones made here with seeded numpy noise (wood, marble, fabric, metal, leather).
Each material is one large sheet, cut as a 4x4 checkerboard: training crops come from its even blocks
and test crops from its odd ones (different regions of the "product", with the same mix of what the
sheet holds), and every crop gets a small random scale (0.9-1.1),
rotation (up to 8 degrees) and brightness (0.93-1.07) jitter. Defects are subtle: spots, thin
scratches, faint stains, shallow dents and small foreign inclusions, 2-5 % of the width, with a
contrast tied to the material's own variation (faint on calm marble, stronger in busy grass), each
with a pixel mask. Per material: 200 training images, 50 normal and 50 defective test
images, 96x96, written as a folder layout and an Edge Impulse data directory (like the demo data).

The GIMP pattern files are reserved for independent evaluation and are not used here.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from framework.demo_data import soft_mask, write_dataset

MATERIALS = ("brick", "grass", "gravel", "wood", "marble", "fabric", "metal", "leather")
DEFECTS = ("spot", "scratch", "stain", "dent", "inclusion")
SHEET = 1024
CROP = 112
BLOCKS = 4  # the sheet as a 4x4 checkerboard: training crops from the even blocks, test crops from the odd ones
TINTS = {"brick": (0.86, 0.52, 0.42), "grass": (0.52, 0.78, 0.32), "gravel": (0.80, 0.76, 0.70)}


def _noise(
    rng: np.random.Generator,
    size: int,
    octaves: int = 5,
    base: int = 4,
    persistence: float = 0.5,
    aspect: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """Fractal value noise in 0..1 (sum of bicubically upsampled random grids)."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        gy, gx = base * 2**o * aspect[0], base * 2**o * aspect[1]
        grid = rng.random((gy, gx)).astype(np.float32)
        layer = np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC))
        out += amp * layer
        total += amp
        amp *= persistence
    out /= total
    return (out - out.min()) / (out.max() - out.min() + 1e-9)


def _colour(v: np.ndarray, dark: tuple[float, float, float], light: tuple[float, float, float]) -> np.ndarray:
    d, l_ = np.asarray(dark, np.float32), np.asarray(light, np.float32)
    return np.clip(d + v[..., None] * (l_ - d), 0, 1)


def sheet(material: str, seed: int = 0) -> np.ndarray:
    """The material's sheet, (SHEET, SHEET, 3) float32 RGB in 0..1 (skimage photos are 512: upsampled)."""
    rng = np.random.default_rng([seed, MATERIALS.index(material)])
    if material in TINTS:
        import skimage.data

        img = np.asarray(getattr(skimage.data, material)(), np.float32) / 255.0
        tint = np.asarray(TINTS[material], np.float32)
        img = img[..., None] * (tint / tint.max())
        return (
            np.asarray(
                Image.fromarray((img * 255).astype(np.uint8)).resize((SHEET, SHEET), Image.Resampling.BICUBIC),
                np.float32,
            )
            / 255.0
        )
    y, x = np.mgrid[0:SHEET, 0:SHEET].astype(np.float32) / SHEET
    if material == "wood":
        warp = _noise(rng, SHEET, 4, 3)
        rings = np.sin(2 * math.pi * (18 * x + 4.0 * warp + 0.3 * _noise(rng, SHEET, 3, 2, aspect=(8, 1))))
        v = 0.55 + 0.25 * rings + 0.2 * (_noise(rng, SHEET, 6, 2, aspect=(16, 1)) - 0.5)
        return _colour(np.clip(v, 0, 1), (0.36, 0.22, 0.11), (0.78, 0.58, 0.36))
    if material == "marble":
        turb = _noise(rng, SHEET, 6, 3, 0.6)
        v = 0.5 + 0.5 * np.sin(2 * math.pi * (3 * (x + y) + 5 * turb))
        v = 0.75 + 0.25 * v**0.3 - 0.1 * _noise(rng, SHEET, 5, 8)
        return _colour(np.clip(v, 0, 1), (0.42, 0.42, 0.46), (0.95, 0.94, 0.92))
    if material == "fabric":
        period = 10.0
        warp_threads = 0.5 + 0.5 * np.sin(2 * math.pi * x * SHEET / period)
        weft_threads = 0.5 + 0.5 * np.sin(2 * math.pi * y * SHEET / period)
        over = (np.floor(x * SHEET / period) + np.floor(y * SHEET / period)) % 2
        v = np.where(over > 0, warp_threads, weft_threads) * 0.6 + 0.25 + 0.15 * _noise(rng, SHEET, 6, 16)
        return _colour(np.clip(v, 0, 1), (0.10, 0.16, 0.34), (0.45, 0.55, 0.80))
    if material == "metal":
        brushed = _noise(rng, SHEET, 5, 2, 0.7, aspect=(64, 1))
        v = 0.55 + 0.3 * (brushed - 0.5) + 0.1 * (_noise(rng, SHEET, 3, 2) - 0.5)
        return _colour(np.clip(v, 0, 1), (0.35, 0.36, 0.38), (0.85, 0.86, 0.88))
    if material == "leather":
        cells = _noise(rng, SHEET, 2, 48, 0.5)
        creases = np.abs(_noise(rng, SHEET, 4, 24) - 0.5) * 2
        v = 0.5 * cells + 0.35 * creases**0.5 + 0.15 * _noise(rng, SHEET, 6, 8)
        return _colour(np.clip(v, 0, 1), (0.20, 0.11, 0.06), (0.62, 0.40, 0.24))
    raise ValueError(f"unknown material {material!r}; choose from {', '.join(MATERIALS)}")


def crop(sheet_img: np.ndarray, rng: np.random.Generator, size: int, train: bool, sheet_size: int = 0) -> np.ndarray:
    """A jittered crop (scale, rotation, brightness) from the training or the test region of a square sheet."""
    SHEET = sheet_size or sheet_img.shape[0]  # noqa: N806 - the sheet's side
    scale = rng.uniform(0.9, 1.1)
    side = int(round(CROP * scale * 1.5))  # room for the rotation
    blocks = [(i, j) for i in range(BLOCKS) for j in range(BLOCKS) if (i + j) % 2 == (0 if train else 1)]
    i, j = blocks[int(rng.integers(len(blocks)))]
    cell = SHEET // BLOCKS
    inner = int(round(CROP * scale))
    # the crop itself lies inside the block; the rotation margin around it may reach into the neighbours
    cy = i * cell + inner // 2 + int(rng.integers(0, cell - inner + 1))
    cx = j * cell + inner // 2 + int(rng.integers(0, cell - inner + 1))
    y0 = int(np.clip(cy - side // 2, 0, SHEET - side))
    x0 = int(np.clip(cx - side // 2, 0, SHEET - side))
    patch = Image.fromarray((sheet_img[y0 : y0 + side, x0 : x0 + side] * 255).astype(np.uint8))
    patch = patch.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR, center=(cx - x0, cy - y0))
    ox, oy = cx - x0 - inner // 2, cy - y0 - inner // 2
    patch = patch.crop((ox, oy, ox + inner, oy + inner)).resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(patch, np.float32) / 255.0 * rng.uniform(0.93, 1.07)
    return np.clip(arr, 0, 1)


def add_defect(
    img: np.ndarray, kind: str, rng: np.random.Generator, other: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A subtle defect of ``kind`` (2-5 % of the width) on ``img``; returns (image, boolean mask)."""
    s = img.shape[0]
    cx, cy = rng.uniform(0.2 * s, 0.8 * s, size=2)
    mean = img.reshape(-1, 3).mean(0)
    # contrast relative to the material's own variation: faint on calm marble, stronger in busy grass
    delta = float(np.clip(5.0 * img.mean(-1).std(), 0.3, 0.8))
    if kind == "spot":
        r = rng.uniform(0.02, 0.025) * s + 1.0
        alpha = 0.9 * soft_mask(
            s, lambda d, k: d.ellipse([(cx - r) * k, (cy - r) * k, (cx + r) * k, (cy + r) * k], fill=255), 0.6
        )
        colour = np.clip(mean + rng.choice([-1, 1]) * delta, 0, 1)
    elif kind == "scratch":
        length, angle = rng.uniform(0.15, 0.3) * s, rng.uniform(0, math.pi)
        dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
        alpha = 0.75 * soft_mask(
            s,
            lambda d, k: d.line(
                [(cx - dx) * k, (cy - dy) * k, (cx + dx) * k, (cy + dy) * k],
                fill=255,
                width=int(rng.uniform(1.5, 2.5) * k),
            ),
            0,
        )
        colour = np.clip(mean + rng.choice([-1, 1]) * delta, 0, 1)
    elif kind == "stain":
        rx, ry = rng.uniform(0.03, 0.05, size=2) * s + 1.0
        alpha = 0.55 * soft_mask(
            s, lambda d, k: d.ellipse([(cx - rx) * k, (cy - ry) * k, (cx + rx) * k, (cy + ry) * k], fill=255), 1.2
        )
        colour = np.clip(mean * np.asarray(rng.choice([[1.3, 0.8, 0.6], [0.7, 0.9, 1.3], [1.2, 1.2, 0.6]])), 0, 1)
    elif kind == "dent":  # a shallow bump: lit on one side, shaded on the other
        r = rng.uniform(0.035, 0.05) * s + 1.0
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (r * r)
        bump = np.exp(-2.0 * d2)
        angle = rng.uniform(0, 2 * math.pi)
        shade = ((xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)) / r * bump
        out = img + (0.6 * delta * shade)[..., None]
        return np.clip(out, 0, 1).astype(np.float32), d2 < 1.0
    elif kind == "inclusion":  # a small piece of another material
        p = max(3, int(round(rng.uniform(0.04, 0.05) * s)))
        r0, c0 = (int(v) for v in rng.integers(0, other.shape[0] - p, size=2))
        y0, x0 = int(np.clip(cy - p / 2, 0, s - p)), int(np.clip(cx - p / 2, 0, s - p))
        out = img.copy()
        piece = other[r0 : r0 + p, c0 : c0 + p]
        piece = piece - piece.mean((0, 1)) + img[y0 : y0 + p, x0 : x0 + p].mean((0, 1))  # same mean colour
        out[y0 : y0 + p, x0 : x0 + p] = 0.2 * img[y0 : y0 + p, x0 : x0 + p] + 0.8 * np.clip(piece, 0, 1)
        mask = np.zeros((s, s), bool)
        mask[y0 : y0 + p, x0 : x0 + p] = True
        return out.astype(np.float32), mask
    else:
        raise ValueError(f"unknown defect {kind!r}")
    out = (1 - alpha[..., None]) * img + alpha[..., None] * colour
    return np.clip(out, 0, 1).astype(np.float32), alpha > 0.15


def write_material(
    out: Path, material: str, *, n_train: int = 200, n_good: int = 50, n_bad: int = 50, size: int = 96, seed: int = 0
) -> dict[str, Path]:
    """Write ``out/<material>`` (folder layout with masks) and ``out/<material>-ei`` (Edge Impulse)."""
    rng = np.random.default_rng([seed, 77, MATERIALS.index(material)])
    tex = sheet(material, seed)
    other = sheet(MATERIALS[(MATERIALS.index(material) + 3) % len(MATERIALS)], seed)
    other = np.asarray(Image.fromarray((other * 255).astype(np.uint8)).resize((size * 2, size * 2)), np.float32) / 255
    train = np.stack([crop(tex, rng, size, True) for _ in range(n_train)])
    good = [crop(tex, rng, size, False) for _ in range(n_good)]
    bad = []
    for i in range(n_bad):
        kind = DEFECTS[i % len(DEFECTS)]
        img, mask = add_defect(crop(tex, rng, size, False), kind, rng, other)
        bad.append((kind, quantised(img), mask))
    return write_dataset(out / material, out / f"{material}-ei", quantised(train), [quantised(g) for g in good], bad)


def quantised(images: np.ndarray) -> np.ndarray:
    """Images as their 8-bit PNGs hold them, so the Edge Impulse arrays and the PNGs give the same scores."""
    return (np.clip(images, 0, 1) * 255).round().astype(np.float32) / 255


def bench_setup(
    doc: str, defaults: dict[str, str] | None = None, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> tuple[argparse.Namespace, Any, Any]:
    """The measurement scripts' command line (--data, --materials, --param NAME=VALUE, --json, and what
    ``extra`` adds), one torch thread, and the registry and configuration (``defaults`` overridden by
    --param) they measure."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap)
    ap.add_argument("--param", action="append", default=[], help="NAME=VALUE, as on `vadblocks train`")
    ap.add_argument("--json", default=None)
    if extra is not None:
        extra(ap)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from framework.config import resolve
    from framework.plugins import get_registry

    registry = get_registry()
    config = resolve(registry, {**(defaults or {}), **dict(p.split("=", 1) for p in args.param)})
    print(f"configuration: {config.as_cli_values(registry)}\n")
    return args, registry, config


FAMILIES = ("dev", "ufoai", "openarena", "nexuiz")


def add_data_args(ap: argparse.ArgumentParser) -> None:
    """--data, --families-data, --family and --materials: which benchmark materials a script measures."""
    ap.add_argument("--data", default="bench/hard", help="where the dev family lives (written when missing)")
    ap.add_argument(
        "--families-data",
        default="bench/families",
        help="where the texture families live, one folder each (written when missing)",
    )
    ap.add_argument(
        "--family",
        default="dev",
        help="comma-separated families: dev (this file's), "
        "ufoai, openarena, nexuiz (benchmarks/texture_data.py; nexuiz confirms only), or 'all'",
    )
    ap.add_argument("--materials", default=None, help="comma-separated materials (default: every one)")


def family_of(name: str) -> str:
    """The family of a material as the scripts name it (``family/material``; the dev family's plainly)."""
    return name.split("/")[0] if "/" in name else "dev"


def by_family(names: Iterable[str]) -> dict[str, list[str]]:
    """Material names grouped by family (see :func:`family_of`), in the order they come."""
    families: dict[str, list[str]] = {}
    for name in names:
        families.setdefault(family_of(name), []).append(name)
    return families


def dump_file(folder: str | Path, name: str) -> Path:
    """Where `hard_bench.py --dump folder` keeps material ``name``'s scores."""
    return Path(folder) / f"{name.replace('/', '__')}.npz"


def read_dumps(folder: str | Path) -> Iterator[tuple[str, str, Any]]:
    """(family, material name, the loaded .npz) of each material `hard_bench.py --dump folder` kept."""
    for f in sorted(Path(folder).glob("*.npz")):
        name = f.stem.replace("__", "/")
        yield family_of(name), name, np.load(f)


def family_materials(family: str) -> tuple[str, ...]:
    """The materials of ``family`` (dev: this file's; the others: benchmarks/texture_data.py)."""
    if family == "dev":
        return MATERIALS
    from texture_data import FAMILIES as TEXTURES

    if family not in TEXTURES:
        raise SystemExit(f"unknown family {family!r}; choose from {', '.join(FAMILIES)} or all")
    return tuple(TEXTURES[family][2])


def materials(args: argparse.Namespace) -> Iterator[tuple[str, Any, Any]]:
    """(name, Edge Impulse dataset for training, folder-layout test split with masks) of each chosen
    material of each chosen family (named ``family/material`` outside the dev family), writing the ones
    missing on disk first."""
    from framework.data import load_dataset

    for name, ei_dir, folder in material_dirs(args):
        yield name, load_dataset(ei_dir), load_dataset(folder).test


def material_dirs(args: argparse.Namespace) -> Iterator[tuple[str, Path, Path]]:
    """(name, Edge Impulse directory, folder-layout directory) of each chosen material (see :func:`materials`)."""
    families = FAMILIES if args.family == "all" else tuple(args.family.split(","))
    wanted = None if not args.materials else set(args.materials.split(","))
    for family in families:
        root = Path(args.data) if family == "dev" else Path(args.families_data) / family
        for m in family_materials(family):
            name = m if family == "dev" else f"{family}/{m}"
            if wanted is not None and m not in wanted and name not in wanted:
                continue
            if not (root / f"{m}-ei" / "X_split_train.npy").exists():
                if family == "dev":
                    write_material(root, m)
                else:
                    from texture_data import write_material as write_texture

                    write_texture(root, family, m)
            yield name, root / f"{m}-ei", root / m


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/hard")
    ap.add_argument("--materials", default=",".join(MATERIALS))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    for m in a.materials.split(","):
        paths = write_material(Path(a.out), m, seed=a.seed)
        print(f"{m}: {paths['folder']} (folder layout), {paths['edge-impulse']} (Edge Impulse)")


if __name__ == "__main__":
    main()
