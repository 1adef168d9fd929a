"""Expected performance at train time, from normal images alone.

:func:`validate` cuts the training images into seeded random folds of ``HOLDOUT_FRACTION`` and holds
each out in turn: a copy of the fitted scorer that has not learned from them
(:meth:`framework.scorer.Scorer.holdout`) scores them and one synthetic anomaly made from each
(:mod:`framework.train.synthetic`). Scorers that cannot forget images are refitted on the other
images, for the first fold only (a refit costs a whole fit). Random folds hold out images whose
near-duplicates stay in training; for the threshold's normal scores :func:`similar_groups` and
:func:`near_duplicate_groups` also hold out groups of similar images and groups of near-duplicates
(overlapping crops, frames of one scene) together, as new images from parts of the product no
training image shows. :func:`summary` turns those scores into the ``validation`` section of anomaly_metadata.json at
the suggested threshold; :func:`labelled_summary` adds real figures when the data directory's test
split is labelled. The final model is always the one trained on every normal image.
"""

from __future__ import annotations

import dataclasses
import heapq
from typing import Any, Callable, Iterable

import numpy as np
import torch

from framework.data import Split
from framework.metrics import auroc, evaluate
from framework.scorer import HeldOutScores, concat_batches
from framework.train.synthetic import KINDS, SCALES, make_anomalies

HOLDOUT_FRACTION = 0.2
MIN_IMAGES = 10  # fewer training images than this: no validation (nothing sensible to hold out)
PIXEL_IMAGES = 1000  # the pixel AUROC estimate uses at most this many images (10,000 training images: 184 M pixels)
SEED = 0
FOLD_SPREAD = 0.05  # folds' image AUROCs further apart than this: the estimate is printed with their range
GROUPS = 5  # groups of similar images held out in turn for the threshold's normal scores
LINKED_IMAGES = 500  # near-duplicate groups up to this many training images (their distances grow as N^2)
QUERY_STEP = 3  # image distances query every 3rd cell of each image's stride-8 grid
DISTANCE_BLOCK = 16_000_000  # cell distances image_distances holds at once (64 MB of float32)


def fold_splits(n: int, seed: int = SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """Indices (kept, held out) of ``n`` training images for each fold: a seeded random order cut into
    parts of about ``HOLDOUT_FRACTION`` (at least 2 images each), every image held out once."""
    order = np.random.default_rng([seed, n]).permutation(n)
    n_held = max(2, int(round(n * HOLDOUT_FRACTION)))
    parts = max(1, min(n // 2, round(n / n_held)))
    return [(np.sort(np.setdiff1d(order, h)), np.sort(h)) for h in np.array_split(order, parts)]


def similar_groups(descriptors: np.ndarray, k: int = GROUPS, seed: int = SEED) -> list[np.ndarray]:
    """Indices of up to ``k`` groups of similar images: seeded k-means (k-means++ start) on the standardised
    ``descriptors`` (N, D); groups that would leave fewer than 2 images on either side are left out."""
    x = np.asarray(descriptors, np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    n = len(x)
    rng = np.random.default_rng([seed, n])
    centres = x[[int(rng.integers(n))]]
    for _ in range(1, min(k, n)):
        d = ((x[:, None] - centres[None]) ** 2).sum(-1).min(1)
        pick = int(rng.choice(n, p=d / d.sum())) if d.sum() > 0 else int(rng.integers(n))
        centres = np.vstack([centres, x[pick]])
    labels = np.zeros(n, int)
    for _ in range(100):
        labels = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        new = np.array([x[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(len(centres))])
        if np.allclose(new, centres):
            break
        centres = new
    groups = [np.flatnonzero(labels == j) for j in range(len(centres))]
    return [g for g in groups if 2 <= len(g) <= n - 2]


def near_duplicate_groups(maps: torch.Tensor, k: int = GROUPS, seed: int = SEED) -> list[np.ndarray]:
    """Indices of up to ``k`` groups of images to hold out in turn, near-duplicates always in the same group.

    ``maps`` (N, C, H, W) are the images' stride-8 feature maps. Average-linkage clustering of
    :func:`image_distances`, split top-down into clusters of at most a group's share (:func:`_split_tree`),
    packed whole (largest first, seeded order among equal sizes) into the ``k`` groups of fewest images:
    overlapping crops or frames of one scene fall in one cluster, so a held-out image has no near-duplicate
    left in training, as a new image from an unseen part of the product. The distances grow as N^2:
    :func:`validate` calls this up to ``LINKED_IMAGES`` training images. Groups that would leave fewer than
    2 images on either side are left out.
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    n = len(maps)
    if n < 4:
        return []
    labels = _split_tree(linkage(squareform(image_distances(maps), checks=False), "average"), n, k)
    rng = np.random.default_rng([seed, n])
    ids, sizes = np.unique(labels, return_counts=True)
    fill, group = np.zeros(k, int), np.zeros(n, int)
    for i in np.lexsort((rng.random(len(ids)), -sizes)):  # largest cluster first, into the smallest group
        j = int(fill.argmin())
        group[labels == ids[i]] = j
        fill[j] += sizes[i]
    groups = [np.flatnonzero(group == j) for j in range(k)]
    return [g for g in groups if 2 <= len(g) <= n - 2]


def _split_tree(tree: np.ndarray, n: int, k: int) -> np.ndarray:
    """Cluster labels of ``n`` images from an average-linkage ``tree``: the root split top-down, the largest
    cluster first, until there are at least ``k`` clusters and none holds more than a group's share
    (``n / k``). Data without near-duplicates chains into one large cluster that sheds outliers one by
    one; splitting it down to a group's share keeps one group from holding most images out at once."""
    children = {n + i: (int(a), int(b)) for i, (a, b) in enumerate(tree[:, :2])}
    size = {n + i: int(c) for i, c in enumerate(tree[:, 3])}
    heap = [(-n, n + len(tree) - 1)]  # (minus size, node): the largest cluster on top
    while heap:
        top, node = heap[0]
        if -top <= 1 or (len(heap) >= k and -top <= n / k):
            break
        heapq.heappop(heap)
        for child in children[node]:
            heapq.heappush(heap, (-size.get(child, 1), child))
    nodes = [node for _, node in heap]
    labels = np.empty(n, int)
    for label, node in enumerate(nodes):
        stack = [node]
        while stack:
            v = stack.pop()
            if v < n:
                labels[v] = label
            else:
                stack += children[v]
    return labels


def image_distances(maps: torch.Tensor, step: int = QUERY_STEP) -> np.ndarray:
    """(N, N) symmetric distances between images: for a grid of image i's cells (every ``step``-th one), the
    distance to the closest cell of image j, averaged, and averaged with the same from j to i. Crops that
    overlap share their cells, shifted, so they lie far closer than crops of the same texture elsewhere."""
    n, c, h, w = maps.shape
    cells = maps.permute(0, 2, 3, 1).float()
    ref = cells.reshape(n * h * w, c)
    ref_sq = (ref * ref).sum(1)
    query = cells[:, step // 2 :: step, step // 2 :: step].reshape(n, -1, c)
    per = query.shape[1]
    out = np.empty((n, n), np.float32)
    chunk = max(1, DISTANCE_BLOCK // (per * n * h * w))
    for a in range(0, n, chunk):
        q = query[a : a + chunk].reshape(-1, c)
        closest = torch.addmm(-ref_sq, q, ref.T, alpha=2.0).reshape(-1, n, h * w).amax(2)  # max of 2qr - |r|^2
        nearest = ((q * q).sum(1, keepdim=True) - closest).clamp_min(0).sqrt()
        out[a : a + chunk] = nearest.reshape(-1, per, n).mean(1).numpy()
    return (out + out.T) / 2


def _group_inputs(batches: Iterable[list], n: int) -> tuple[np.ndarray, torch.Tensor | None]:
    """What the groups of ``n`` images are formed by, in one pass over their feature maps: per image the mean
    and standard deviation over space of each channel of the stride-8 level (:func:`similar_groups`), and
    up to ``LINKED_IMAGES`` images the stride-8 maps themselves (:func:`near_duplicate_groups`)."""
    descriptors, maps = [], []
    for features in batches:
        f = features[0]
        descriptors.append(np.concatenate([f.mean((2, 3)).numpy(), f.std((2, 3)).numpy()], 1))
        if n <= LINKED_IMAGES:
            maps.append(f)
    return np.concatenate(descriptors), torch.cat(maps) if maps else None


def validate(
    scorer: Any,
    images: np.ndarray,
    features_of: Callable[[np.ndarray], list],
    training_batches: Callable[[np.ndarray, bool], Iterable[list]],
    refit: Callable[[np.ndarray], Any],
    seed: int = SEED,
) -> dict[str, Any] | None:
    """Scores of held-out normal images and of their synthetic anomalies, or None below ``MIN_IMAGES``.

    ``features_of(images)`` extracts feature maps of new images; ``training_batches(ids, copies)`` streams
    those of training images ``ids`` (with their augmented copies when ``copies``; already extracted for
    the fit); ``refit(kept)`` fits a fresh scorer on the kept training images (used when
    ``scorer.holdout`` returns None).

    The estimate comes from ``scorer.holdout(held, kept)``: the model as if fitted on the other images.
    ``strict`` holds the same images' scores from ``scorer.holdout(held)`` (both through
    ``scorer.holdout_predict``), where nothing stands in for
    what the held-out images taught the scorer (PatchCore: their bank entries dropped): a conservative
    view, as of images from parts of the product no training image shows. The threshold policies use
    it (:func:`framework.train.thresholds.suggest`); for refitted scorers both are the same scores.
    ``grouped`` holds normal scores of each of :func:`similar_groups` and, up to ``LINKED_IMAGES`` images,
    of :func:`near_duplicate_groups` (None for refitted scorers), both kinds of groups pooled: from
    ``scorer.holdout(group)`` (``normal_scores``) and from ``scorer.holdout(group, kept)``
    (``substituted_scores``), through ``scorer.holdout_predict``. The threshold policies' false positive
    bound is taken on them.
    ``training_scores`` holds every training image's leave-one-image-out score when the scorer gave them
    along the way (``HeldOutScores.leave_one_out``; else None): what ``scorer.training_scores_batches`` gives.
    """
    n = len(images)
    if n < MIN_IMAGES:
        return None
    normal_grids, normal_scores, anomaly_grids, anomaly_scores, masks, kinds = [], [], [], [], [], []
    strict_normal, strict_anomaly = [], []
    copy, n_kept, refitted = "the fitted scorer made to forget the held-out images (Scorer.holdout)", 0, False
    loo: np.ndarray | None = np.full(n, np.nan)
    for fold, (kept, held) in enumerate(fold_splits(n, seed)):
        if refitted:  # a refit costs a whole fit: scorers that cannot forget images are validated on one fold
            break
        normal = concat_batches(training_batches(held, False))
        defective, m, k = make_anomalies(images[held], images[kept], seed + fold)
        defects = features_of(defective)
        both = scorer.holdout_predict(held, training_batches(kept, True), [normal, defects], own=0)
        if both is None:
            val_scorer, copy, refitted = refit(kept), "a scorer refitted on the other training images", True
            both = [HeldOutScores(*g_s, g_s[1]) for g_s in (val_scorer.predict(normal), val_scorer.predict(defects))]
        n_kept = len(kept)
        if loo is not None and both[0].leave_one_out is not None:
            loo[held] = both[0].leave_one_out
        else:
            loo = None
        for r, grids, scores, strict_scores in zip(
            both, (normal_grids, anomaly_grids), (normal_scores, anomaly_scores), (strict_normal, strict_anomaly)
        ):
            grids.append(r.grids)
            scores.append(r.scores)
            strict_scores.append(r.strict)
        masks.append(m)
        kinds += list(k)
    grouped, groups = None, []
    if not refitted:
        descriptors, maps = _group_inputs(training_batches(np.arange(n), False), n)
        groups = similar_groups(descriptors, seed=seed) + (
            [] if maps is None else near_duplicate_groups(maps, seed=seed)
        )
    if groups:
        everyone = np.arange(n)
        held_out = [
            scorer.holdout_predict(
                g, training_batches(np.setdiff1d(everyone, g), True), [concat_batches(training_batches(g, False))]
            )[0]
            for g in groups
        ]
        grouped = {
            "normal_scores": np.concatenate([r.strict for r in held_out]),
            "substituted_scores": np.concatenate([r.scores for r in held_out]),
            "groups": len(groups),
        }
    return {
        "normal_scores": np.concatenate(normal_scores),
        "anomaly_scores": np.concatenate(anomaly_scores),
        "grids": np.concatenate(normal_grids + anomaly_grids),
        "masks": np.concatenate(masks),
        "kinds": kinds,
        "n_kept": int(n_kept),
        "folds": len(normal_scores),
        "scorer": copy,
        "grouped": grouped,
        "fold_sizes": [len(x) for x in normal_scores],
        "strict": {"normal_scores": np.concatenate(strict_normal), "anomaly_scores": np.concatenate(strict_anomaly)},
        "training_scores": None if loo is None or np.isnan(loo).any() else loo,
    }


def summary(result: dict[str, Any], threshold: float, policy: str, seconds: float) -> dict[str, Any]:
    """The metadata's ``validation`` section: estimates at ``threshold`` and how they were measured."""
    normal, anomalies = result["normal_scores"], result["anomaly_scores"]
    h, w = result["masks"].shape[1:]
    n_all = len(normal) + len(anomalies)
    pixel = np.ones(n_all, bool)
    if n_all > PIXEL_IMAGES:  # pixel AUROC from a seeded subset of the images: bounded memory at any set size
        pixel[:] = False
        pixel[np.random.default_rng(SEED).choice(n_all, PIXEL_IMAGES, replace=False)] = True
    split = Split(
        np.zeros((n_all, 1, 1, 3), np.float32),
        np.r_[np.zeros(len(normal), bool), np.ones(len(anomalies), bool)],
        [],
        masks=np.concatenate([np.zeros((len(normal), h, w), bool), result["masks"]]),
        has_mask=pixel,
    )
    figures = _figures(result["grids"], np.r_[normal, anomalies], split, threshold)
    strict = result["strict"]  # F1 and FPR at the threshold: on the scores the threshold policies see
    at_threshold = _figures(
        result["grids"],
        np.r_[strict["normal_scores"], strict["anomaly_scores"]],
        dataclasses.replace(split, masks=None, has_mask=None),
        threshold,
    )  # no pixel AUROC
    figures.update({k: at_threshold[k] for k in ("f1", "fpr", "counts")})
    folds = fold_aurocs(normal, anomalies, result.get("fold_sizes", [len(normal)]))
    if len(folds) > 1:
        figures["image_auroc_folds"] = [min(folds), max(folds)]
    return {
        "source": "synthetic",
        **figures,
        "method": {
            "heldOutNormal": int(len(normal)),
            "syntheticAnomalies": int(len(anomalies)),
            "trainedOn": result["n_kept"],
            "holdoutFraction": HOLDOUT_FRACTION,
            "folds": result["folds"],
            "seed": SEED,
            "defectKinds": sorted(set(result["kinds"]), key=KINDS.index),
            "defectScales": [list(s) for s in SCALES],
            "inSampleThreshold": policy in ("fpr", "f1"),
            "pixelAurocImages": int(pixel.sum()),
            "description": (
                "the training images in seeded random fifths, each held out in turn"
                if result["folds"] > 1
                else "a seeded random fifth of the training images held out"
            )
            + "; one synthetic anomaly (cut-paste, noise-blend, line, smear, each at two sizes "
            "and contrasts) made from each held-out image; scored by "
            + result["scorer"]
            + (
                "; the threshold policies, F1 and false positive rate use the same images scored "
                "with nothing in place of the held-out images' memory (conservative)"
                if result["folds"] > 1
                else ""
            )
            + "; the final model is trained on all images",
            "seconds": round(seconds, 3),
        },
    }


def fold_aurocs(normal: np.ndarray, anomalies: np.ndarray, sizes: list[int]) -> list[float]:
    """Image AUROC of each fold (its held-out normal images against their own synthetic anomalies)."""
    edges = np.cumsum([0, *sizes])
    labels = [np.r_[np.zeros(b - a, bool), np.ones(b - a, bool)] for a, b in zip(edges[:-1], edges[1:])]
    return [float(auroc(y, np.r_[normal[a:b], anomalies[a:b]])) for y, a, b in zip(labels, edges[:-1], edges[1:])]


def labelled_summary(grids: np.ndarray, scores: np.ndarray, split: Split, threshold: float) -> dict[str, Any] | None:
    """Real figures on a labelled test split (both classes present), else None."""
    if not len(split) or not split.anomalous.any() or split.anomalous.all():
        return None
    return {"source": "labelled", **_figures(grids, scores, split, threshold)}


def _figures(grids: np.ndarray, scores: np.ndarray, split: Split, threshold: float) -> dict[str, Any]:
    r = evaluate(grids, scores, split, threshold)
    c = r["counts"]
    negatives = c["fp"] + c["tn"]
    return {
        "image_auroc": r["image_auroc"],
        "pixel_auroc": r["pixel_auroc"],
        "f1": r["f1"],
        "fpr": c["fp"] / negatives if negatives else None,
        "threshold": r["threshold"],
        "counts": c,
        "n_images": r["n_images"],
    }


def estimate_lines(section: dict[str, Any]) -> Iterable[str]:
    """Human lines for the end of ``vadblocks train``."""

    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    m = section.get("method", {})
    spread = section.get("image_auroc_folds")
    folds = (
        f" ({spread[0]:.3f}-{spread[1]:.3f} across the {m.get('folds')} folds)"
        if spread and spread[1] - spread[0] > FOLD_SPREAD
        else ""
    )
    yield (
        f"expected performance (synthetic anomalies on {m.get('heldOutNormal')} held-out images): "
        f"image AUROC {fmt(section['image_auroc'])}{folds}, pixel AUROC {fmt(section['pixel_auroc'])}, "
        f"F1 {fmt(section['f1'])}, false positive rate {fmt(section['fpr'])}"
    )
    lab = section.get("labelled")
    if lab:
        yield (
            f"on the labelled test split ({lab['n_images']} images): image AUROC {fmt(lab['image_auroc'])}, "
            f"pixel AUROC {fmt(lab['pixel_auroc'])}, F1 {fmt(lab['f1'])}, false positive rate {fmt(lab['fpr'])}"
        )
