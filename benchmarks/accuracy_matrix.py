"""Image/pixel AUROC, F1 and fit time of every scorer x backbone pair on the demo dataset.

    python benchmarks/accuracy_matrix.py [--data demo/data] [--backbones a,b] [--scorers a,b]

Backbones without offline weights are skipped unless --weights NAME=PATH is given.
Trains on each texture's Edge Impulse directory, tests on its folder layout (with masks).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from framework.config import resolve
from framework.data import load_dataset
from framework.demo_data import TEXTURES, make_demo_dataset
from framework.metrics import evaluate
from framework.plugins import get_registry
from framework.train.pipeline import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="demo/data")
    ap.add_argument("--backbones", default="")
    ap.add_argument("--scorers", default="")
    ap.add_argument("--weights", action="append", default=[], help="NAME=PATH for a backbone without offline weights")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    reg = get_registry()
    weights = dict(w.split("=", 1) for w in a.weights)
    backbones = [
        b
        for b in (a.backbones.split(",") if a.backbones else reg.backbones)
        if reg.backbone(b).cls.offline_weights or b in weights
    ]
    scorers = a.scorers.split(",") if a.scorers else list(reg.scorers)
    data = Path(a.data)
    if not (data / f"{TEXTURES[-1]}-ei").exists():
        make_demo_dataset(data)
    print(f"torch threads: {torch.get_num_threads()}\n")
    print("| scorer | backbone | texture | image AUROC | pixel AUROC | F1 | fit s |")
    print("|---|---|---|---|---|---|---|")
    for scorer in scorers:
        for backbone in backbones:
            for texture in TEXTURES:
                ds = load_dataset(data / f"{texture}-ei")
                test = load_dataset(data / texture).test
                t0 = time.perf_counter()
                model = train(
                    ds,
                    resolve(reg, {"scoring-function": scorer, "backbone": backbone}),
                    registry=reg,
                    weights=weights.get(backbone),
                    progress=False,
                )
                fit_s = time.perf_counter() - t0
                r = evaluate(*model.predict(test.images), test, model.threshold)
                print(
                    f"| {scorer} | {backbone} | {texture} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | "
                    f"{r['f1']:.3f} | {fit_s:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
