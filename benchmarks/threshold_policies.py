"""Threshold policies compared offline on the scores `hard_bench.py --dump DIR` saved (same models, no retraining).

    cd benchmarks && python hard_bench.py --family all --dump bench/dumps && python threshold_policies.py bench/dumps

Per family: the mean F1, false positive rate (mean and max) and recall on the test images at the threshold each
policy variant picks from the validation scores, beside the best F1 any threshold with FPR <= 0.10 reaches.
"""

import sys

import numpy as np
from hard_data import read_dumps

from framework.metrics import best_f1
from framework.train.thresholds import conformal_quantile


def at(thr, s, y):
    pred = s > thr
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return f1, fp / max(1, (~y).sum()), tp / max(1, y.sum())


def policies(z):
    g, sn, sa = z["grouped_normal"], z["strict_normal"], z["strict_anomaly"]
    labels = np.r_[np.zeros(len(sn), bool), np.ones(len(sa), bool)]
    _, best = best_f1(labels, np.r_[sn, sa])
    out = {}
    for r in (0.10, 0.15, 0.20):
        b = conformal_quantile(g, r)
        out[f"f1|conf{r:.2f}"] = max(best, b)
        out[f"conf{r:.2f}"] = b
    out["f1|conf.10 union"] = max(best, conformal_quantile(np.r_[g, sn], 0.10))
    out["mean(conf.10,conf.20)"] = (conformal_quantile(g, 0.10) + conformal_quantile(g, 0.20)) / 2
    return out


rows = {}
for fam, name, z in read_dumps(sys.argv[1]):
    s, y = z["test_scores"], z["test_anomalous"].astype(bool)
    bb = best_f1(y, s, max_fpr=0.10)[0]
    r = {"bounded_best": bb, "saved": at(float(z["threshold"]), s, y)}
    for k, t in policies(z).items():
        r[k] = at(t, s, y)
    rows.setdefault(fam, {})[name] = r
keys = [k for k in next(iter(next(iter(rows.values())).values())) if k != "bounded_best"]
for fam, ms in rows.items():
    bounded = float(np.mean([r["bounded_best"] for r in ms.values()]))
    print(f"== {fam} ({len(ms)} materials): bounded best F1 {bounded:.3f}")
    for k in keys:
        f1 = np.mean([r[k][0] for r in ms.values()])
        fpr = [r[k][1] for r in ms.values()]
        rec = np.mean([r[k][2] for r in ms.values()])
        print(
            f"  {k:<24} F1 {f1:.3f} (gap {f1 - bounded:+.3f})  FPR mean {np.mean(fpr):.3f} max {max(fpr):.2f}  "
            f"recall {rec:.3f}"
        )
