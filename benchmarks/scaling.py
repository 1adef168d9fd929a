"""PatchCore training time and peak memory against the number of training images.

    python benchmarks/scaling.py [--sizes 1000,2000,5000,10000] [--image-size 96] [--textures brick]
                                 [--exact-up-to 2000] [--threads 1] [--json F]

Training sets are normal crops of the demo textures (framework.demo_data.normal_crops); the test
split is the demo's (24 normal + 24 defective images per texture, generated at --image-size).
Every run is a fresh process (peak RSS = its VmHWM, images included) training MobileNetV2 +
PatchCore with the defaults (10 % coreset, 9 neighbours) through framework.train.pipeline.train, i.e.
streamed feature extraction, the two-stage coreset above 16,384 patches and the leave-one-out
threshold. With --exact-up-to N the sizes up to N also train with the exact single-stage coreset,
and the table shows the image-AUROC difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _measure import vm_hwm_mb

ROOT = Path(__file__).resolve().parent.parent


def run_one(texture: str, n: int, size: int, exact: bool, threads: int, test_dir: str) -> dict:
    """Train on ``n`` crops and test on the demo test split (in this process)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    import blocks.scorers.patchcore as patchcore
    from framework.data import Dataset, Split, load_dataset
    from framework.demo_data import normal_crops
    from framework.metrics import evaluate
    from framework.train.pipeline import train

    if exact:
        patchcore.CHUNK_PATCHES = 1 << 40  # one chunk: the exact single-stage coreset
    test = load_dataset(Path(test_dir) / texture).test
    images = normal_crops(texture, n, size)
    ds = Dataset(
        train=Split(images, np.zeros(n, bool), [f"{i}" for i in range(n)]), test=test, source="scaling", kind="folder"
    )
    t0 = time.perf_counter()
    model = train(ds, progress=False)
    fit_s = time.perf_counter() - t0
    result = evaluate(*model.predict(test.images), test, model.threshold)
    return {
        "texture": texture,
        "images": n,
        "image_size": size,
        "coreset": "exact" if exact else "two-stage",
        "fit_s": fit_s,
        "timings": model.metadata["timings"],
        "peak_rss_mb": vm_hwm_mb(),
        "memory_bank": int(model.scorer.bank.shape[0]),
        "coreset_stats": model.scorer.coreset_stats,
        "image_auroc": result["image_auroc"],
        "pixel_auroc": result["pixel_auroc"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,2000,5000,10000")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--textures", default="brick")
    ap.add_argument("--exact-up-to", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:
        texture, n, exact, test_dir = a._one.split(":", 3)
        print(json.dumps(run_one(texture, int(n), a.image_size, exact == "1", a.threads, test_dir)))
        return
    from framework.demo_data import make_demo_dataset

    textures = a.textures.split(",")
    test_dir = tempfile.mkdtemp(prefix="vadblocks-scaling-")
    make_demo_dataset(test_dir, tuple(textures), n_train=1, size=a.image_size)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), PYTHONPATH=str(ROOT))
    rows = []
    for texture in textures:
        for n in (int(s) for s in a.sizes.split(",")):
            for exact in [False, True] if n <= a.exact_up_to else [False]:
                cmd = [
                    sys.executable,
                    __file__,
                    "--image-size",
                    str(a.image_size),
                    "--threads",
                    str(a.threads),
                    "--_one",
                    f"{texture}:{n}:{int(exact)}:{test_dir}",
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode:
                    raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"MobileNetV2 + PatchCore defaults, {a.image_size}x{a.image_size}, {a.threads} thread(s)\n")
    print(
        "| texture | images | coreset | fit s | s per 1k images | peak RSS MB | bank | image AUROC | "
        "AUROC diff to exact |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        exact = next(
            (
                e
                for e in rows
                if e["coreset"] == "exact" and e["images"] == r["images"] and e["texture"] == r["texture"]
            ),
            None,
        )
        diff = "" if exact is None or exact is r else f"{r['image_auroc'] - exact['image_auroc']:+.3f}"
        print(
            f"| {r['texture']} | {r['images']} | {r['coreset']} | {r['fit_s']:.1f} | "
            f"{1000 * r['fit_s'] / r['images']:.1f} | {r['peak_rss_mb']:.0f} | {r['memory_bank']} | "
            f"{r['image_auroc']:.3f} | {diff} |"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
