"""Accuracy on the development benchmark (benchmarks/hard_data.py), per material and as a mean.

    python benchmarks/hard_bench.py [--data bench/hard] [--materials ...] [--param num-layers=3 ...] [--json F]

Writes the benchmark first when --data lacks it. For each material: trains the configuration (defaults
plus --param values) on the 200 normal training images of the Edge Impulse directory, scores the 50 + 50
test images of the folder layout in-process (torch, one thread), and reports image AUROC, pixel AUROC,
F1 and false positive rate at the suggested threshold, the best F1 over all thresholds (for comparison),
the train-time validation estimates (synthetic anomalies on held-out training images) and the fit time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from hard_data import bench_setup, materials


def main() -> None:
    a, reg, config = bench_setup(__doc__)
    from framework.metrics import evaluate
    from framework.pipeline import train

    rows = {}
    print("| material | image AUROC | pixel AUROC | F1 at suggested | best F1 | FPR at suggested | "
          "estimated image AUROC | estimated pixel AUROC | estimated F1 | estimated FPR | fit s |")
    print("|---" * 11 + "|")
    for m, ds, test in materials(a):
        t0 = time.perf_counter()
        model = train(ds, config, registry=reg, progress=False)
        fit_s = time.perf_counter() - t0
        grids, scores = model.predict(test.images)
        r = evaluate(grids, scores, test, model.threshold)
        v = model.metadata["validation"]
        rows[m] = {"image_auroc": r["image_auroc"], "pixel_auroc": r["pixel_auroc"], "f1": r["f1"] or 0.0,
                   "best_f1": r["best_f1"], "best_threshold": r["best_threshold"], "threshold": model.threshold,
                   "fpr": r["counts"]["fp"] / max(1, r["counts"]["fp"] + r["counts"]["tn"]),
                   "est_image_auroc": v.get("image_auroc"), "est_pixel_auroc": v.get("pixel_auroc"),
                   "est_f1": v.get("f1"), "est_fpr": v.get("fpr"), "fit_s": fit_s,
                   "validation_s": model.metadata["timings"]["validationSeconds"]}
        x = rows[m]
        print(f"| {m} | {x['image_auroc']:.3f} | {x['pixel_auroc']:.3f} | {x['f1']:.3f} | {x['best_f1']:.3f} | "
              f"{x['fpr']:.2f} | {_fmt(x['est_image_auroc'])} | {_fmt(x['est_pixel_auroc'])} | {_fmt(x['est_f1'])} | "
              f"{_fmt(x['est_fpr'], 2)} | {fit_s:.1f} |", flush=True)
    keys = ("image_auroc", "pixel_auroc", "f1", "best_f1", "fpr", "est_image_auroc", "est_pixel_auroc", "est_f1",
            "est_fpr")
    mean = {k: (None if any(r[k] is None for r in rows.values()) else float(np.mean([r[k] for r in rows.values()])))
            for k in keys}
    print("| **mean** | " + " | ".join(_fmt(mean[k], 2 if "fpr" in k else 3) for k in keys) + " | |")
    if a.json:
        Path(a.json).write_text(json.dumps({"configuration": config.as_cli_values(reg), "materials": rows,
                                            "mean": mean}, indent=2))


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


if __name__ == "__main__":
    main()
