"""Test-time flips, measured: image AUROC when each test image is also scored flipped and the scores combined.

    cd benchmarks && python flip_scores.py [--family all] [--param NAME=VALUE ...] [--json F]

Per material: trains the configuration once (defaults plus --param), scores the test images as they are and
flipped horizontally, vertically and both (in-process, torch, one thread), and reports image AUROC of the
plain score, of the mean with the horizontal flip, of the mean of all four, of their maximum and minimum.
Nothing of this is in the product (it would multiply inference by 2-4); docs/benchmarks.md, "The image score".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hard_data import bench_setup, family_of, materials


def main() -> None:
    a, reg, config = bench_setup(__doc__)
    from framework.metrics import auroc
    from framework.train.pipeline import train

    rows: dict[str, dict[str, float]] = {}
    for m, ds, test in materials(a):
        model = train(ds, config, registry=reg, progress=False)
        x = test.images
        views = {"none": x, "h": x[:, :, ::-1], "v": x[:, ::-1], "hv": x[:, ::-1, ::-1]}
        s = {k: model.predict(np.ascontiguousarray(v))[1] for k, v in views.items()}
        y = test.anomalous.astype(bool)
        four = np.stack(list(s.values()))
        rows[m] = {
            "plain": auroc(y, s["none"]),
            "mean with h": auroc(y, (s["none"] + s["h"]) / 2),
            "mean of 4": auroc(y, four.mean(0)),
            "max of 4": auroc(y, four.max(0)),
            "min of 4": auroc(y, four.min(0)),
        }
        print(m, "  ".join(f"{k} {v:.3f}" for k, v in rows[m].items()), flush=True)
    families: dict[str, list[dict[str, float]]] = {}
    for m, r in rows.items():
        families.setdefault(family_of(m), []).append(r)
    for f, rs in families.items():
        print(f"{f} mean:", "  ".join(f"{k} {np.mean([r[k] for r in rs]):.4f}" for k in rs[0]))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
