"""Drive a .eim with Edge Impulse's Python SDK (run in the SDK's own venv: no vadblocks, no torch).

    python python_client.py MODEL.eim shm|socket THRESHOLD IMAGE...

Prints one JSON object: the hello answer, then per image the result at the model's threshold and
the result after ``set_threshold(THRESHOLD)``; with --repeat N also the median classify latency (ms)
and the runner process's peak resident memory.
"""

import argparse
import json
import time

import cv2
from edge_impulse_linux.image import ImageImpulseRunner, get_features_from_image_with_studio_mode
from edge_impulse_linux.runner import ImpulseRunner

ap = argparse.ArgumentParser()
ap.add_argument("eim")
ap.add_argument("mode", choices=["shm", "socket"])
ap.add_argument("threshold", type=float)
ap.add_argument("images", nargs="+")
ap.add_argument("--repeat", type=int, default=0)
a = ap.parse_args()

if a.mode == "shm":
    runner = ImageImpulseRunner(a.eim)  # the SDK's image runner: uses the shared memory the .eim announces
else:
    runner = ImpulseRunner(a.eim, allow_shm=False)
try:
    hello = runner.init()
    params = hello["model_parameters"]
    out = {"hello": hello, "shm": runner._input_shm is not None, "before": [], "after": [], "features": []}
    feats = []
    for path in a.images:
        img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        if a.mode == "shm":
            f, _ = runner.get_features_from_image(img)
        else:
            f, _ = get_features_from_image_with_studio_mode(
                img, params["image_resize_mode"], params["image_input_width"], params["image_input_height"], False
            )
        feats.append(f)
        out["before"].append(runner.classify(f))
    out["set_threshold"] = runner.set_threshold({"id": params["thresholds"][0]["id"], "min_anomaly_score": a.threshold})
    out["after"] = [runner.classify(f) for f in feats]
    if a.repeat:
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            runner.classify(feats[0])
            times.append((time.perf_counter() - t0) * 1000)
        out["median_ms"] = sorted(times)[len(times) // 2]
        with open(f"/proc/{runner._runner.pid}/status") as fh:  # the .eim process's peak memory
            out["runner_peak_rss_kb"] = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:"))
    out["features"] = feats[:1]
finally:
    runner.stop()
print(json.dumps(out))
