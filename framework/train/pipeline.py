"""Training and inference: backbone features -> scorer -> per-cell grids, plus model files."""

from __future__ import annotations

import json
import time
import zipfile
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from framework import __version__
from framework.backbone import Backbone, fold_batch_norms
from framework.config import BlockConfig, resolve, saved_values
from framework.data import Dataset
from framework.errors import VadblocksError
from framework.outputs import atomic_directory
from framework.plugins import Registry, get_registry
from framework.portable.modelfiles import (
    BACKBONE_STATE_FILE,
    FORMAT_VERSION,
    METADATA_FILE,
    SCORER_STATE_FILE,
    check_model_dir,
    integrity,
    npz_layout,
)
from framework.scorer import Scorer, concat_batches
from framework.train import augment, thresholds, validation
from framework.train.feature_cache import FeatureCache
from framework.train.fused import fuse_conv_activations

BATCH_SIZE = 32
FEATURE_CACHE_BYTES = 1 << 30  # training features kept between the fit and threshold passes
TRAIN_SCORES_KEPT = 2000  # training scores recorded in the metadata (the report draws their distribution)


class FeatureExtractor(nn.Module):
    """Normalisation of 0..1 NCHW RGB input followed by the backbone's feature maps."""

    def __init__(self, backbone_module: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.backbone = backbone_module
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone((x - self.mean) / self.std)


@dataclass
class AnomalyModel:
    """A trained model: feature extractor + fitted scorer + threshold and metadata."""

    backbone: Backbone
    scorer: Scorer
    extractor: FeatureExtractor
    config: BlockConfig
    input_shape: tuple[int, int, int]  # (H, W, C) of the images the model takes
    threshold: float
    metadata: dict[str, Any] = field(default_factory=dict)
    # while training under `vadblocks tune`: the shared cache and the key of this backbone's features in it
    feature_cache: tuple[FeatureCache, tuple] | None = None
    # the extractor with its batch norms folded into the convolutions and each convolution fused with its
    # activation (built on first use; never saved)
    _folded: FeatureExtractor | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def grid_shape(self) -> tuple[int, int]:
        h, w, _ = self.input_shape
        return (self.scorer.grid_size(h), self.scorer.grid_size(w))

    def _batches(self, images: np.ndarray, progress: bool, desc: str) -> Iterator[list[torch.Tensor]]:
        check_images(images, self.input_shape)
        for i in tqdm(
            range(0, len(images), BATCH_SIZE),
            desc=desc,
            unit="batch",
            disable=not progress,
            leave=False,
            mininterval=1.0,
        ):
            yield self._extract(images[i : i + BATCH_SIZE])

    def _extract(self, batch: np.ndarray) -> list[torch.Tensor]:
        if self.feature_cache is not None:
            cache, key = self.feature_cache
            return cache.features(key, self.scorer.feature_levels(), batch, self._run_backbone)
        return self._run_backbone(batch)

    def _run_backbone(self, batch: np.ndarray) -> list[torch.Tensor]:
        if self._folded is None:
            self._folded = fuse_conv_activations(fold_batch_norms(deepcopy(self.extractor).eval()))
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
            return [f.contiguous() for f in self._folded(x)]

    def features(self, images: np.ndarray, progress: bool = False) -> list[torch.Tensor]:
        """Backbone feature maps (one tensor per level) of (N, H, W, 3) 0..1 images."""
        return concat_batches(self._batches(images, progress, "features"))

    def predict(self, images: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Grids (N, G, G) and image scores (N,) for (N, H, W, 3) 0..1 images."""
        grids, scores = [], []
        for feats in self._batches(images, progress, "scoring"):
            g, s = self.scorer.predict(feats)
            grids.append(g)
            scores.append(s)
        return np.concatenate(grids), np.concatenate(scores)

    def save(self, out_dir: str | Path, extra: Callable[[Path], dict[str, Any]] | None = None) -> Path:
        """Write the model files into ``out_dir`` atomically.

        ``extra(folder)`` writes more files into the temporary folder first and returns their metadata
        entries (``exports``): :func:`framework.train.export.save_with_exports` passes the exported models.
        """
        arrays, state_config = self.scorer.get_state()
        meta = dict(self.metadata)
        meta["scorerState"] = state_config
        meta["files"] = {
            "metadata": METADATA_FILE,
            "scorerState": SCORER_STATE_FILE,
            "backboneState": BACKBONE_STATE_FILE,
        }
        with atomic_directory(out_dir) as tmp:
            meta["exports"] = extra(tmp) if extra is not None else {}
            np.savez(tmp / SCORER_STATE_FILE, **arrays)
            np.savez(
                tmp / BACKBONE_STATE_FILE,
                **{k: v.detach().cpu().numpy() for k, v in self.extractor.backbone.state_dict().items()},
            )
            meta["arrays"] = {name: npz_layout(tmp / name) for name in (SCORER_STATE_FILE, BACKBONE_STATE_FILE)}
            meta["integrity"] = integrity(tmp, [p.name for p in tmp.iterdir()])
            (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return Path(out_dir)

    @classmethod
    def load(cls, model_dir: str | Path, registry: Registry | None = None) -> "AnomalyModel":
        """Load a model directory written by :meth:`save` (no pickle involved)."""
        model_dir = Path(model_dir)
        meta = check_model_dir(model_dir)
        params = meta["parameters"]
        input_shape = tuple(int(v) for v in meta["inputShape"])
        threshold = float(meta["nominalThresholdScore"])
        registry = registry or get_registry()
        config = resolve(registry, saved_values(registry, params))
        backbone, scorer = _instantiate(registry, config)
        extractor = FeatureExtractor(backbone.create_module(scorer.feature_levels()), backbone.mean, backbone.std)
        try:
            with np.load(model_dir / BACKBONE_STATE_FILE, allow_pickle=False) as z:
                extractor.backbone.load_state_dict({k: torch.from_numpy(z[k].copy()) for k in z.files})
            with np.load(model_dir / SCORER_STATE_FILE, allow_pickle=False) as z:
                scorer.set_state({k: z[k] for k in z.files}, meta.get("scorerState", {}))
        except (OSError, ValueError, RuntimeError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise VadblocksError(f"model files in {model_dir} are missing or corrupt: {exc}") from None
        extractor.eval()
        model = cls(backbone, scorer, extractor, config, input_shape, threshold, meta)  # type: ignore[arg-type]
        model.check_consistency(model_dir)
        return model

    def check_consistency(self, model_dir: str | Path) -> None:
        """One blank image through backbone and scorer must give the metadata's grid (arrays fit each other)."""
        try:
            grid, _ = self.predict(np.full((1,) + tuple(self.input_shape[:2]) + (3,), 0.5, np.float32))
        except Exception as exc:  # noqa: BLE001 - any failure here means the saved arrays do not fit
            raise VadblocksError(
                f"model files in {model_dir} do not fit together ({type(exc).__name__}: {exc}); retrain the model"
            ) from None
        if list(grid.shape[1:]) != list(self.metadata["gridSize"]):
            raise VadblocksError(
                f"model files in {model_dir} give a {grid.shape[1]}x{grid.shape[2]} grid but the "
                f"metadata records {self.metadata['gridSize']}; retrain the model"
            )


def check_images(images: np.ndarray, input_shape: tuple[int, int, int]) -> None:
    """Raise a clear error unless ``images`` is a finite float32 (N, H, W, 3) batch of the model's size."""
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[3] != 3:
        shape = getattr(images, "shape", None)
        raise VadblocksError(f"images must be a (N, H, W, 3) array, got shape {shape}")
    if images.dtype != np.float32:
        raise VadblocksError(f"images must be float32 in 0..1, got {images.dtype}")
    if len(images) == 0:
        raise VadblocksError("no images given")
    if tuple(images.shape[1:3]) != tuple(input_shape[:2]):
        raise VadblocksError(
            f"images are {images.shape[1]}x{images.shape[2]} but the model takes "
            f"{input_shape[0]}x{input_shape[1]}; resize them (e.g. --image-size {input_shape[0]})"
        )
    if not np.isfinite(images).all():
        raise VadblocksError("images contain NaN or infinite values")


def _instantiate(registry: Registry, config: BlockConfig) -> tuple[Backbone, Scorer]:
    backbone = registry.backbone(config.backbone).cls(**config.backbone_params)
    scorer = registry.scorer(config.scorer).cls(**config.scorer_params)
    return backbone, scorer


def train(
    dataset: Dataset,
    config: BlockConfig | None = None,
    *,
    registry: Registry | None = None,
    weights: str | None = None,
    progress: bool = True,
    feature_cache: FeatureCache | None = None,
) -> AnomalyModel:
    """Fit the configured scorer on the backbone features of the (normal) training images.

    With memory augmentation the scorer also learns the images' flips/turns; validation (on by
    default) estimates accuracy on held-out images with synthetic anomalies; the threshold policy
    picks the suggested threshold. ``feature_cache`` lets trainings on the same images share
    backbone features (``vadblocks tune``).
    """
    registry = registry or get_registry()
    config = config or resolve(registry, {})
    backbone, scorer = _instantiate(registry, config)
    h, w, c = dataset.image_shape
    backbone.check_input_size(h, w)
    opts = config.training
    if augment.square_only(opts["augment"]) and h != w:
        raise VadblocksError(
            f"--augment {opts['augment']} turns images by 90 degrees, which needs square images "
            f"(these are {h}x{w}); use --augment flips or none"
        )
    t0 = time.perf_counter()
    module = backbone.create_module(scorer.feature_levels())
    weights_source = backbone.load_pretrained(module, weights)
    extractor = FeatureExtractor(module, backbone.mean, backbone.std).eval()
    model = AnomalyModel(backbone, scorer, extractor, config, (h, w, c), threshold=0.0)
    if feature_cache is not None:
        model.feature_cache = (
            feature_cache,
            (config.backbone, tuple(sorted(config.backbone_params.items())), weights_source),
        )
    stream = FeatureStream(model, dataset.train.images, augment.transforms(opts["augment"]), progress)
    scorer.verbose = progress
    if stream.transforms:
        scorer.fit_batches(stream.first_pass(), groups=stream.groups())
    else:
        scorer.fit_batches(stream.first_pass())
    t1 = time.perf_counter()
    held = None
    if opts["validation"]:
        held = validation.validate(
            scorer,
            dataset.train.images,
            model.features,
            stream.subset,
            lambda kept: _refit(registry, config, stream, kept),
        )
    t2 = time.perf_counter()
    train_scores = held.get("training_scores") if held else None  # leave-one-out scores validation got on its way
    if train_scores is None:
        train_scores = scorer.training_scores_batches(stream.second_pass())
    t3 = time.perf_counter()
    policy = opts["threshold_policy"]
    if policy == "f1" and held is None:  # validation off, or too few images to hold any out
        policy = "max"
    model.threshold, how = thresholds.suggest(policy, opts["target_fpr"], train_scores, held)
    if policy != opts["threshold_policy"]:
        how += (
            " (the f1 policy needs validation, which is "
            + ("turned off" if not opts["validation"] else f"skipped below {validation.MIN_IMAGES} training images")
            + ")"
        )
    gh, gw = model.grid_shape
    model.metadata = {
        "version": __version__,
        "formatVersion": FORMAT_VERSION,
        "nominalThresholdScore": model.threshold,
        "thresholdPolicy": {
            "policy": opts["threshold_policy"],
            "how": how,
            **({"targetFpr": opts["target_fpr"]} if opts["threshold_policy"] != "max" else {}),
        },
        "maxTrainingScore": float(np.max(train_scores)),  # Edge Impulse's suggested threshold
        "trainScoreRange": [float(np.min(train_scores)), float(np.max(train_scores))],
        "trainScores": score_sample(train_scores),
        "gridSize": [gh, gw],
        "inputShape": [h, w, c],
        "imageInputScaling": dataset.scaling,
        "scorer": config.scorer,
        "backbone": config.backbone,
        "parameters": config.as_cli_values(registry),
        "backboneWeights": weights_source,
        "normalization": {"mean": list(backbone.mean), "std": list(backbone.std)},
        "numTrainImages": int(len(dataset.train)),
        "augmentation": {
            "mode": opts["augment"],
            "imagesLearned": len(dataset.train) * augment.copies(opts["augment"]),
        },
        "timings": {
            "fitSeconds": round(t1 - t0, 3),
            "thresholdSeconds": round(t3 - t2, 3),
            "validationSeconds": round(t2 - t1, 3),
        },
        "plugins": {
            "scorer": _dist(registry.scorer(config.scorer)),
            "backbone": _dist(registry.backbone(config.backbone)),
        },
    }
    if held is None:
        reason = (
            "turned off (--validation 0)"
            if not opts["validation"]
            else f"fewer than {validation.MIN_IMAGES} training images"
        )
        model.metadata["validation"] = {"source": None, "reason": reason}
    else:
        section = validation.summary(held, model.threshold, opts["threshold_policy"], t2 - t1)
        if len(dataset.test):
            grids, scores = model.predict(dataset.test.images, progress)
            labelled = validation.labelled_summary(grids, scores, dataset.test, model.threshold)
            if labelled is not None:
                section["labelled"] = labelled
        model.metadata["validation"] = section
    model.feature_cache = None
    return model


def _refit(registry: Registry, config: BlockConfig, stream: "FeatureStream", kept: np.ndarray) -> Scorer:
    """A fresh scorer of ``config`` fitted on the training images ``kept`` (with their augmented copies)."""
    _, fresh = _instantiate(registry, config)
    fresh.fit_batches(stream.subset(kept))
    return fresh


class FeatureStream:
    """The training set's feature batches, streamed for fitting, then again for training scores.

    With memory augmentation each batch of training images is followed by its transformed copies
    (:meth:`groups` maps every streamed image to its source image); the second pass streams the
    originals only. Batches of the first pass are kept while they total at most
    ``FEATURE_CACHE_BYTES``; beyond that later passes extract them again, so memory stays bounded
    for any number of training images.
    """

    def __init__(self, model: AnomalyModel, images: np.ndarray, transforms: tuple = (), progress: bool = False) -> None:
        check_images(images, model.input_shape)
        self.model, self.images, self.transforms, self.progress = model, images, tuple(transforms), progress
        self._cache: list[tuple[np.ndarray, int, list[torch.Tensor]]] | None = []  # (source ids, copy, features)

    def groups(self) -> np.ndarray:
        """Source image index of every image :meth:`first_pass` streams, in order."""
        out = []
        for i in range(0, len(self.images), BATCH_SIZE):
            ids = np.arange(i, min(i + BATCH_SIZE, len(self.images)))
            out += [ids] * (1 + len(self.transforms))
        return np.concatenate(out)

    def _stream(self, ids: np.ndarray, copies: bool) -> Iterator[tuple[np.ndarray, int, list]]:
        """(source ids, copy number (0 = original), features) of images ``ids`` in batches, each followed by
        its transformed copies when ``copies``."""
        for i in range(0, len(ids), BATCH_SIZE):
            chunk = ids[i : i + BATCH_SIZE]
            batch = self.images[chunk]
            for copy, fn in enumerate((None,) + (self.transforms if copies else ())):
                x = batch if fn is None else np.ascontiguousarray(fn(batch))
                yield chunk, copy, self.model._extract(x)

    def first_pass(self) -> Iterator[list[torch.Tensor]]:
        size = 0
        ids = np.arange(len(self.images))
        steps = tqdm(
            self._stream(ids, True),
            desc="features",
            unit="batch",
            leave=False,
            disable=not self.progress,
            mininterval=1.0,
            total=-(-len(ids) // BATCH_SIZE) * (1 + len(self.transforms)),
        )
        for chunk, copy, feats in steps:
            if self._cache is not None:
                size += sum(f.numel() * f.element_size() for f in feats)
                if size <= FEATURE_CACHE_BYTES:
                    self._cache.append((chunk, copy, feats))
                else:
                    self._cache = None
            yield feats

    def second_pass(self) -> Iterable[list[torch.Tensor]]:
        """Feature batches of the original training images, in order."""
        if self._cache is not None:
            return [feats for _, copy, feats in self._cache if copy == 0]
        return (feats for _, _, feats in self._stream(np.arange(len(self.images)), False))

    def subset(self, ids: np.ndarray, copies: bool = True) -> Iterator[list[torch.Tensor]]:
        """Feature batches of training images ``ids`` (with their copies when ``copies``), from the cache
        when it holds them."""
        if self._cache is None:
            yield from (feats for _, _, feats in self._stream(np.asarray(ids), copies))
            return
        wanted = np.zeros(len(self.images), bool)
        wanted[np.asarray(ids)] = True
        for chunk, copy, feats in self._cache:
            if copy and not copies:
                continue
            sel = torch.from_numpy(wanted[chunk])
            if bool(sel.any()):
                yield [f[sel] for f in feats]


def score_sample(scores: np.ndarray, limit: int = TRAIN_SCORES_KEPT) -> list[float]:
    """Training scores for the metadata (the report's distribution): all of them, sorted, up to ``limit``;
    beyond, ``limit`` evenly spaced order statistics (minimum and maximum included)."""
    s = np.sort(np.asarray(scores, np.float64))
    if len(s) > limit:
        s = s[np.round(np.linspace(0, len(s) - 1, limit)).astype(np.int64)]
    return [float(f"{v:.6g}") for v in s]


def _dist(entry: Any) -> dict[str, str]:
    return {"distribution": entry.distribution, "version": entry.version}
