"""Wall time of a default fit, in fresh processes, one torch thread; several code trees side by side.

    python benchmarks/fit_time.py --data benchmarks/bench/families/ufoai/rock-ei [--runs 3]
        [--trees /path/to/checkout-a,/path/to/checkout-b] [--param NAME=VALUE ...]

Each run starts a fresh Python process that loads the data directory, then times `train()` (the product's
defaults plus --param: augmentation, validation and the threshold included; no export) and reports it with
the seconds the metadata's `timings` give validation and the leave-one-out training scores. With --trees
(checkouts of other commits, e.g. made by `git worktree add`), the trees take turns run by run, so that a busy
machine slows them alike; the medians per tree are printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, time
import torch
torch.set_num_threads(1)
from framework.config import resolve
from framework.data import load_dataset
from framework.plugins import get_registry
from framework.train.pipeline import train
data, params = sys.argv[1], json.loads(sys.argv[2])
ds = load_dataset(data, image_size=96)
cfg = resolve(get_registry(), params)
t0 = time.perf_counter()
model = train(ds, cfg, progress=False)
fit = time.perf_counter() - t0
t = model.metadata.get("timings", {})
print(json.dumps({"fit_s": fit, "validation_s": t.get("validationSeconds"), "loo_s": t.get("thresholdSeconds")}))
"""


def run_once(tree: str | None, data: str, params: dict[str, str]) -> dict:
    """One fit in a fresh process (``tree`` first on the import path when given)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if tree:
        env["PYTHONPATH"] = os.pathsep.join([tree, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, data, json.dumps(params)],
        env=env,
        cwd=tree or None,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="an Edge Impulse data directory or a folder layout")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--trees", default="", help="comma-separated checkouts to alternate (default: this one)")
    ap.add_argument("--param", action="append", default=[], help="NAME=VALUE, as on `vadblocks train`")
    a = ap.parse_args()
    trees = [str(Path(t).resolve()) for t in a.trees.split(",") if t] or [None]
    params = dict(p.split("=", 1) for p in a.param)
    data = str(Path(a.data).resolve())
    results: dict[str | None, list[dict]] = {t: [] for t in trees}
    for i in range(a.runs):
        for t in trees:
            r = run_once(t, data, params)
            results[t].append(r)
            print(
                f"run {i + 1} {t or 'this checkout'}: fit {r['fit_s']:.2f} s, validation {r['validation_s']} s, "
                f"leave-one-out training scores {r['loo_s']} s"
            )
    for t, rs in results.items():
        fit = statistics.median(r["fit_s"] for r in rs)
        val = [r["validation_s"] for r in rs if r["validation_s"] is not None]
        print(
            f"median {t or 'this checkout'}: fit {fit:.2f} s"
            + (f", validation {statistics.median(val):.2f} s" if val else "")
        )


if __name__ == "__main__":
    main()
