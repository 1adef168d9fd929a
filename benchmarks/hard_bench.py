"""Accuracy on the development benchmark (benchmarks/hard_data.py), per material and as a mean.

    python benchmarks/hard_bench.py [--data bench/hard] [--materials ...] [--param num-layers=3 ...] [--json F]

Writes the benchmark first when --data lacks it. For each material: trains the configuration (defaults
plus --param values) on the 200 normal training images of the Edge Impulse directory, scores the 50 + 50
test images of the folder layout in-process (torch, one thread), and reports image AUROC, pixel AUROC,
F1 at the suggested threshold, the best F1 over all thresholds (for comparison) and the fit time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hard_data import MATERIALS, write_material


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="bench/hard")
    ap.add_argument("--materials", default=",".join(MATERIALS))
    ap.add_argument("--param", action="append", default=[], help="NAME=VALUE, as on `vadblocks train`")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from framework.data import load_dataset
    from framework.metrics import evaluate
    from framework.params import resolve
    from framework.pipeline import train
    from framework.plugins import get_registry

    reg = get_registry()
    values = dict(p.split("=", 1) for p in a.param)
    config = resolve(reg, values)
    root = Path(a.data)
    rows = {}
    print(f"configuration: {config.as_cli_values(reg)}\n")
    print("| material | image AUROC | pixel AUROC | F1 at suggested | best F1 | fit s |")
    print("|---|---|---|---|---|---|")
    for m in a.materials.split(","):
        if not (root / f"{m}-ei" / "X_split_train.npy").exists():
            write_material(root, m)
        ds = load_dataset(root / f"{m}-ei")
        test = load_dataset(root / m).test
        t0 = time.perf_counter()
        model = train(ds, config, registry=reg, progress=False)
        fit_s = time.perf_counter() - t0
        grids, scores = model.predict(test.images)
        r = evaluate(grids, scores, test, model.threshold)
        rows[m] = {"image_auroc": r["image_auroc"], "pixel_auroc": r["pixel_auroc"], "f1": r["f1"] or 0.0,
                   "best_f1": r["best_f1"], "best_threshold": r["best_threshold"], "threshold": model.threshold,
                   "fit_s": fit_s}
        x = rows[m]
        print(f"| {m} | {x['image_auroc']:.3f} | {x['pixel_auroc']:.3f} | {x['f1']:.3f} | {x['best_f1']:.3f} | "
              f"{fit_s:.1f} |", flush=True)
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("image_auroc", "pixel_auroc", "f1", "best_f1")}
    print(f"| **mean** | {mean['image_auroc']:.3f} | {mean['pixel_auroc']:.3f} | {mean['f1']:.3f} | "
          f"{mean['best_f1']:.3f} | |")
    if a.json:
        Path(a.json).write_text(json.dumps({"configuration": config.as_cli_values(reg), "materials": rows,
                                            "mean": mean}, indent=2))


if __name__ == "__main__":
    main()
