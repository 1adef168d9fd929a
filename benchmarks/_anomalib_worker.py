"""anomalib 2.7 PatchCore on one category, run inside anomalib's own virtual environment.

Called by compare_anomalib.py; prints one JSON object. Drives anomalib's PatchcoreModel
directly (pre-processing transform, training forward passes, coreset fit, eval forward passes)
so no Lightning overhead is counted. The backbone is torchvision's MobileNetV2 module with the
same weights file vadblocks uses, features taken at ``features.6`` and ``features.13``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from _measure import serving_latency, vm_hwm_mb
from PIL import Image
from sklearn.metrics import roc_auc_score

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def load(folder: Path, size: int) -> np.ndarray:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    return np.stack(
        [
            np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255.0
            for p in files
        ]
    ), files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--category", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--neighbors", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    root = Path(a.category)
    train, _ = load(root / "train" / "good", a.size)
    test_imgs, labels, masks = [], [], []
    for sub in sorted(d for d in (root / "test").iterdir() if d.is_dir()):
        imgs, files = load(sub, a.size)
        test_imgs.append(imgs)
        for f in files:
            labels.append(sub.name != "good")
            mp = root / "ground_truth" / sub.name / f"{f.stem}_mask.png"
            masks.append(
                np.asarray(Image.open(mp).convert("L").resize((a.size, a.size), Image.Resampling.NEAREST)) > 0
                if mp.exists()
                else np.zeros((a.size, a.size), bool)
            )
    test = np.concatenate(test_imgs)
    backbone = torchvision.models.mobilenet_v2(weights=None)
    backbone.features.load_state_dict(torch.load(a.weights, map_location="cpu", weights_only=True))
    model = PatchcoreModel(
        layers=["features.6", "features.13"], backbone=backbone, pre_trained=False, num_neighbors=a.neighbors
    )
    transform = torchvision.transforms.v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])

    def batch(x: np.ndarray) -> torch.Tensor:
        return transform(torch.from_numpy(x).permute(0, 3, 1, 2))

    t0 = time.perf_counter()
    model.train()
    model.feature_extractor.eval()  # frozen backbone, as anomalib intends
    for i in range(0, len(train), 32):
        model(batch(train[i : i + 32]))
    with torch.no_grad():  # Lightning calls fit() outside autograd too
        model.subsample_embedding(a.ratio)
    fit_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        outs = [model(batch(test[i : i + 32])) for i in range(0, len(test), 32)]
        scores = torch.cat([o.pred_score.reshape(-1) for o in outs]).numpy()
        maps = torch.cat([o.anomaly_map.reshape(-1, a.size, a.size) for o in outs]).numpy()
        b1_ms, b32_ms = serving_latency(model, batch(test[:1]), batch(np.resize(test, (32,) + test.shape[1:])))
    y = np.array(labels)
    m = np.stack(masks)
    print(
        json.dumps(
            {
                "image_auroc": float(roc_auc_score(y, scores)),
                "pixel_auroc": float(roc_auc_score(m.reshape(-1), maps.reshape(-1))) if m.any() else None,
                "fit_s": fit_s,
                "latency_b1_ms": b1_ms,
                "latency_b32_ms": b32_ms,
                "peak_rss_mb": vm_hwm_mb(),
                "memory_bank": int(model.memory_bank.shape[0]),
            }
        )
    )


if __name__ == "__main__":
    main()
