"""The train-time estimate taken apart offline, on the scores `hard_bench.py --dump DIR` saved (no retraining).

    cd benchmarks && python hard_bench.py --family all --dump bench/dumps && python estimate_kinds.py bench/dumps [-v]

Per family, for each synthetic defect kind alone and for estimate variants (all kinds; held-out scores
from the strict copy, or from the groups of similar images, against the synthetic anomalies), the mean
estimated image AUROC, its error against the real test AUROC (mean, mean absolute, worst) and the Spearman
rank correlation across the family's materials. ``-v`` adds, per material, the AUROC of each synthetic
kind and of each real defect kind (the test folders' names) against the normal images.
"""

import sys

import numpy as np
from hard_data import read_dumps
from scipy.stats import spearmanr

from framework.metrics import auroc


def auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    return auroc(np.r_[np.zeros(len(normal), bool), np.ones(len(anomalous), bool)], np.r_[normal, anomalous])


def material(z) -> dict[str, float]:
    s, y, test_kinds = z["test_scores"], z["test_anomalous"].astype(bool), z["test_kinds"]
    kinds, normal, anomaly = z["anomaly_kinds"], z["normal"], z["anomaly"]
    r = {"truth": auc(s[~y], s[y])}
    for k in dict.fromkeys(kinds):
        r[f"synthetic {k}"] = auc(normal, anomaly[kinds == k])
    r["estimate (all kinds)"] = auc(normal, anomaly)
    r["strict copy"] = auc(z["strict_normal"], z["strict_anomaly"])
    r["grouped normals"] = auc(z["grouped_normal"], anomaly)
    for k in sorted(set(test_kinds) - {"good"}):
        r[f"real {k}"] = auc(s[~y], s[test_kinds == k])
    return r


rows: dict[str, dict[str, dict[str, float]]] = {}
for fam, name, z in read_dumps(sys.argv[1]):
    if "anomaly_kinds" not in z:
        raise SystemExit(f"{name}'s dump has no synthetic kinds: dump it again with this hard_bench.py")
    rows.setdefault(fam, {})[name] = material(z)
for fam, ms in rows.items():
    print(f"== {fam} ({len(ms)} materials): real image AUROC {np.mean([r['truth'] for r in ms.values()]):.3f}")
    truth = np.array([r["truth"] for r in ms.values()])
    for v in (v for v in next(iter(ms.values())) if v != "truth" and not v.startswith("real ")):
        e = np.array([r[v] for r in ms.values()])
        d = e - truth
        print(
            f"  {v:<24} {e.mean():.3f}  error mean {d.mean():+.3f} |mean| {np.abs(d).mean():.3f} "
            f"worst {d[np.argmax(np.abs(d))]:+.3f}  rank correlation {spearmanr(e, truth)[0]:+.2f}"
        )
if "-v" in sys.argv:
    for ms in rows.values():
        for m, r in ms.items():
            print(m, "  ".join(f"{k} {v:.2f}" for k, v in r.items()))
