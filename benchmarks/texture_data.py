"""Benchmark families of real texture photographs from Debian's game-texture packages.

    python benchmarks/texture_data.py --family ufoai --out bench/families      (writes bench/families/ufoai/...)

Three families, each from its own Debian package (fetched at run time with ``apt-get download`` and
``dpkg-deb -x`` into a cache folder, never committed), eight materials each, chosen as textures that
are uniform at the scale of a crop (no single structure such as a logo or a grate):

- ``ufoai`` (ufoai-textures, GPL-2+ / CC-BY(-SA) 3.0): rock, stone, sand, dry grass, tread plate,
  wood, rocky ground, rocks with moss;
- ``openarena`` (openarena-081-textures, GPL-2+): concrete, diamond plate, rust, dark concrete, woven
  metal floor, worn wall, stone blocks, panelled metal;
- ``nexuiz`` (nexuiz-textures, GPL-2+): sand, concrete, bricks, rusty metal, rusty base plate, earth,
  wood, flagstones. **The confirmation family**: no default is chosen on it (docs/benchmarks.md).

Every texture is one 512x512 sheet cut as a 4x4 checkerboard: training crops from its even blocks,
test crops from its odd ones (regions training never saw), each with scale, rotation and brightness
jitter (the crop of ``hard_data.py``). Defects are of six kinds, each covering 1-10 % of the image
(log-uniform) and masked where the pixels visibly change: thin ``scratch`` es, ``hole`` s (a dark
opening with a lit rim), ``stain`` s (a tinted, soft-edged blob), a ``patch`` of another material of
the family, local ``blur`` and ``missing`` texture (worn flat to its mean colour). They are made
here and share no code with the synthetic anomalies of train-time validation (framework/train/synthetic.py).
Per material: 200 training images, 50 normal and 50 defective test images at 96x96, as a folder layout
with masks and an Edge Impulse data directory.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
from hard_data import crop, quantised
from PIL import Image, ImageFilter

from framework.demo_data import soft_mask, write_dataset

SHEET = 512
DEFECTS = ("scratch", "hole", "stain", "patch", "blur", "missing")
# family: (Debian package, archive inside it, {material: file inside the archive})
FAMILIES: dict[str, tuple[str, str, dict[str, str]]] = {
    "ufoai": (
        "ufoai-textures",
        "usr/share/games/ufoai/base/0textures.pk3",
        {
            "rock": "textures/tex_nature/rock003.png",
            "stone": "textures/tex_nature/stone001.png",
            "sand": "textures/tex_nature/sand.jpg",
            "drygrass": "textures/tex_nature/grass_tall_dry_a.jpg",
            "treadplate": "textures/tex_material/metal002.png",
            "wood": "textures/tex_material/wood003.png",
            "rockyground": "textures/tex_nature/rockyground01.png",
            "mossrock": "textures/tex_nature/pjrock16.png",
        },
    ),
    "openarena": (
        "openarena-081-textures",
        "usr/share/games/openarena/baseoa/pak4-textures.pk3",
        {
            "concrete": "textures/base_floor/concrete.jpg",
            "diamondplate": "textures/base_floor/diamond2c.jpg",
            "rust": "textures/base_wall/rusted.jpg",
            "darkconcrete": "textures/base_wall/concrete_dark.jpg",
            "wovenfloor": "textures/base_floor/clang_floor512.jpg",
            "wornwall": "textures/base_wall/patch10_beatup4.jpg",
            "blocks": "textures/gothic_block/blocks15.jpg",
            "panels": "textures/base_wall/metalfloor_wall_10.jpg",
        },
    ),
    "nexuiz": (
        "nexuiz-textures",
        "usr/share/games/nexuiz/data/textures.pk3",
        {
            "sand": "textures/desertfactory_stone/sand01.tga",
            "concrete": "textures/desertfactory_stone/concrete02.tga",
            "bricks": "textures/desertfactory_stone/bricks01.tga",
            "rustymetal": "textures/desertfactory_metal/metal01.tga",
            "rustplate": "textures/eX/eXmetalBase05Rust.tga",
            "earth": "textures/race/ground.tga",
            "wood": "textures/savdm6ish/wizwood1_2.jpg",
            "flagstones": "textures/savdm6ish/afloor1_3.jpg",
        },
    ),
}
CONFIRMATION_FAMILY = "nexuiz"


def cache_dir() -> Path:
    """Where the Debian packages are unpacked (VADBLOCKS_BENCH_CACHE, else ~/.cache/vadblocks-bench)."""
    return Path(os.environ.get("VADBLOCKS_BENCH_CACHE", Path.home() / ".cache" / "vadblocks-bench"))


def archive(family: str) -> zipfile.ZipFile:
    """The family's texture archive, downloading and unpacking its Debian package on first use."""
    package, inner, _ = FAMILIES[family]
    root = cache_dir() / package
    path = root / inner
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", package], cwd=root, check=True)
        deb = next(root.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        deb.unlink()
    return zipfile.ZipFile(path)


def sheets(family: str) -> dict[str, np.ndarray]:
    """Every material of ``family`` as a (SHEET, SHEET, 3) float32 RGB sheet in 0..1."""
    z = archive(family)
    out = {}
    for material, name in FAMILIES[family][2].items():
        img = Image.open(io.BytesIO(z.read(name))).convert("RGB").resize((SHEET, SHEET), Image.Resampling.LANCZOS)
        out[material] = np.asarray(img, np.float32) / 255.0
    return out


def _area_radius(rng: np.random.Generator, s: int) -> float:
    """Radius of a disc covering 1-10 % of an s x s image (log-uniform area)."""
    area = math.exp(rng.uniform(math.log(0.01), math.log(0.10))) * s * s
    return math.sqrt(area / math.pi)


def _blob(rng: np.random.Generator, s: int, cx: float, cy: float, r: float) -> np.ndarray:
    """A soft irregular blob of about radius ``r`` (0..1 alpha): a polygon with jittered radii."""
    k = int(rng.integers(7, 12))
    angles = np.sort(rng.uniform(0, 2 * math.pi, k))
    radii = r * rng.uniform(0.7, 1.3, k)
    pts = [(cx + rr * math.cos(a), cy + rr * math.sin(a)) for a, rr in zip(angles, radii)]
    return soft_mask(s, lambda d, m: d.polygon([(x * m, y * m) for x, y in pts], fill=255), 0.8)


def add_defect(
    img: np.ndarray, kind: str, rng: np.random.Generator, other: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One realistic defect of ``kind`` on ``img`` ((S, S, 3) in 0..1); returns (image, boolean mask)."""
    s = img.shape[0]
    cx, cy = rng.uniform(0.25 * s, 0.75 * s, 2)
    r = _area_radius(rng, s)
    mean = img.reshape(-1, 3).mean(0)
    if kind == "scratch":  # a thin bent line, its length set by the area it should cover
        width = rng.uniform(1.2, 2.2)
        length = min(0.9 * s, math.pi * r * r / (width * 2.5))
        angle = rng.uniform(0, math.pi)
        pts = [(cx - math.cos(angle) * length / 2, cy - math.sin(angle) * length / 2)]
        for _ in range(3):
            angle += rng.uniform(-0.35, 0.35)
            x, y = pts[-1]
            pts.append((x + math.cos(angle) * length / 3, y + math.sin(angle) * length / 3))
        alpha = 0.85 * soft_mask(
            s, lambda d, m: d.line([(x * m, y * m) for x, y in pts], fill=255, width=int(width * m)), 0
        )
        colour = np.clip(mean + rng.choice([-1, 1]) * rng.uniform(0.25, 0.45), 0, 1)
    elif kind == "hole":  # a dark opening with a lit rim on one side
        r = r * 0.6
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        d = np.hypot(xx - cx, yy - cy) / r
        a = rng.uniform(0, 2 * math.pi)
        rim = np.exp(-(((d - 1.0) / 0.25) ** 2)) * (((xx - cx) * math.cos(a) + (yy - cy) * math.sin(a)) / r)
        out = img * (1 - np.clip(1.2 - d, 0, 1)[..., None] * 0.9) + 0.25 * rim[..., None]
        return np.clip(out, 0, 1).astype(np.float32), d < 1.15
    elif kind == "stain":  # a soft tinted blob (oil, water, rust)
        alpha = rng.uniform(0.45, 0.75) * _blob(rng, s, cx, cy, r)
        tint = np.asarray([[0.55, 0.45, 0.35], [1.35, 1.1, 0.7], [0.7, 0.85, 1.3]][int(rng.integers(3))])
        colour = np.clip(img * tint, 0, 1)
    elif kind == "patch":  # a piece of another material, irregular outline
        alpha = _blob(rng, s, cx, cy, r)
        colour = other
    elif kind == "blur":  # a locally blurred region (out of focus, smeared, molten)
        alpha = _blob(rng, s, cx, cy, r)
        colour = (
            np.asarray(
                Image.fromarray((img * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(2.0, 3.5))),
                np.float32,
            )
            / 255
        )
    elif kind == "missing":  # texture worn away to a flat surface of the mean colour
        alpha = _blob(rng, s, cx, cy, r)
        colour = np.broadcast_to(mean * rng.uniform(0.9, 1.1), img.shape)
    else:
        raise ValueError(f"unknown defect {kind!r}; choose from {', '.join(DEFECTS)}")
    out = (1 - alpha[..., None]) * img + alpha[..., None] * colour
    changed = np.abs(out - img).max(-1) > 0.02  # masked only where the defect is visible
    return np.clip(out, 0, 1).astype(np.float32), (alpha > 0.25) & changed


def write_material(
    out: Path,
    family: str,
    material: str,
    *,
    n_train: int = 200,
    n_good: int = 50,
    n_bad: int = 50,
    size: int = 96,
    seed: int = 0,
) -> dict[str, Path]:
    """Write ``out/<material>`` (folder layout with masks) and ``out/<material>-ei`` (Edge Impulse)."""
    names = list(FAMILIES[family][2])
    all_sheets = sheets(family)
    tex = all_sheets[material]
    rng = np.random.default_rng([seed, 91, list(FAMILIES).index(family), names.index(material)])
    train = np.stack([crop(tex, rng, size, True, SHEET) for _ in range(n_train)])
    good = [crop(tex, rng, size, False, SHEET) for _ in range(n_good)]
    bad = []
    for i in range(n_bad):
        kind = DEFECTS[i % len(DEFECTS)]
        donor = all_sheets[names[(names.index(material) + 1 + i % (len(names) - 1)) % len(names)]]
        other = crop(donor, rng, size, bool(i % 2), SHEET)
        img, mask = add_defect(crop(tex, rng, size, False, SHEET), kind, rng, other)
        bad.append((kind, quantised(img), mask))
    return write_dataset(out / material, out / f"{material}-ei", quantised(train), [quantised(g) for g in good], bad)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=tuple(FAMILIES), required=True)
    ap.add_argument("--out", default="bench/families")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    for m in FAMILIES[a.family][2]:
        paths = write_material(Path(a.out) / a.family, a.family, m, seed=a.seed)
        print(f"{a.family}/{m}: {paths['folder']} (folder layout), {paths['edge-impulse']} (Edge Impulse)")


if __name__ == "__main__":
    main()
