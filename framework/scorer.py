"""The scorer interface: a scikit-learn style estimator over backbone feature maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Sequence

import numpy as np

from framework.errors import VadblocksError
from framework.params import Param, bind_params

if TYPE_CHECKING:  # pragma: no cover - torch is imported on use: declarations load without it
    import torch
    from torch import nn

Features = Sequence["torch.Tensor"]  # one (N, C_l, H_l, W_l) float32 tensor per level, stride 8 first


@dataclass
class HeldOutScores:
    """One input's scores from :meth:`Scorer.holdout_predict`."""

    grids: np.ndarray  # (N, G, G) by holdout(held, kept)
    scores: np.ndarray  # (N,) by holdout(held, kept)
    strict: np.ndarray  # (N,) by holdout(held)
    leave_one_out: np.ndarray | None = None  # (N,) leave-one-image-out scores of the held images (input ``own``)


class Scorer:
    """Base class of scorer plugins.

    Subclasses declare ``name``, ``description`` and ``parameters`` and implement
    :meth:`fit`, :meth:`build_scoring_module`, :meth:`get_state`, :meth:`set_state` and
    :meth:`grid_size`. Scoring always runs through the module :meth:`build_scoring_module`
    returns (a torch module mapping feature maps to ``(grid, image_score)``, built once and
    cached by :meth:`scoring_module`), so the in-process result and an exported graph are the
    same computation.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[tuple[Param, ...]] = ()
    batch_size: ClassVar[int] = 64
    verbose: bool = False  # the framework sets it to show progress bars during fit

    def __init__(self, **params: Any) -> None:
        self.params = bind_params("scorer", self.name, self.parameters, params)
        self._module: "nn.Module | None" = None

    # -- to implement -------------------------------------------------------------------
    def feature_levels(self) -> int:
        """How many backbone levels (stride 8 first) this scorer consumes."""
        return 1

    def grid_size(self, input_size: int) -> int:
        """Grid cells along one side for an input of ``input_size`` pixels."""
        raise NotImplementedError

    def fit(self, features: Features) -> "Scorer":
        """Learn from feature maps of normal images only; return self."""
        raise NotImplementedError

    def fit_batches(self, batches: Iterable[Features], groups: np.ndarray | None = None) -> "Scorer":
        """Learn from a stream of feature-map batches (the training set in order); return self.

        The framework trains through this method. The default concatenates the batches and calls
        :meth:`fit`; scorers that can learn with bounded memory (PatchCore) override it.
        ``groups`` (with memory augmentation only) gives, for each streamed image, the index of the
        training image it is a copy of; :meth:`training_scores_batches` then streams the originals.
        """
        return self.fit(concat_batches(batches))

    def holdout(self, held: np.ndarray, kept: Iterable[Features] | None = None) -> "Scorer | None":
        """A copy of this fitted scorer that has not learned from the training images ``held`` (indices).

        Validation scores held-out images with it. ``kept`` streams the feature batches of the other
        training images and their augmented copies (extracted on demand: a scorer that does not iterate it
        pays nothing); validation also calls it with ``kept`` None for the conservative scores the threshold
        policies use. The default returns None, and the framework fits a fresh scorer on the other images
        instead; scorers that can forget images cheaply override it (PatchCore replaces their memory-bank
        entries by the nearest patches of the other images, or drops them when ``kept`` is None).
        """
        return None

    def holdout_predict(
        self, held: np.ndarray, kept: Iterable[Features], inputs: Sequence[Features], own: int | None = None
    ) -> "list[HeldOutScores] | None":
        """For each of ``inputs``: the grids and scores of ``holdout(held, kept)`` and the scores of
        ``holdout(held)`` (the conservative copy); None where :meth:`holdout` is.

        ``own``: the index of the input that holds the ``held`` training images themselves, in that order; a
        scorer may then also give their leave-one-image-out scores (what :meth:`training_scores_batches`
        gives them) in that input's ``leave_one_out``, when it gets them cheaply along the way. Override to
        share work between the copies (the default builds both and scores ``inputs`` with each)."""
        copy = self.holdout(held, kept)
        if copy is None:
            return None
        strict = self.holdout(held)
        if strict is None:
            raise VadblocksError(
                f"scorer {self.name!r}: holdout(held) returned None but holdout(held, kept) did not; "
                "return a copy from both (or None from both to be refitted)"
            )
        return [HeldOutScores(*copy.predict(x), strict.predict(x)[1]) for x in inputs]

    def build_scoring_module(self) -> nn.Module:
        """A torch module: list of feature maps -> ``(grid (N, G, G), image_score (N,))``."""
        raise NotImplementedError

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The fitted state as named numpy arrays plus a JSON-serialisable dict (no pickle)."""
        raise NotImplementedError

    def set_state(self, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> "Scorer":
        """Restore what :meth:`get_state` returned; return self."""
        raise NotImplementedError

    # -- provided -----------------------------------------------------------------------
    def scoring_module(self) -> nn.Module:
        """The (cached) torch scoring module of the fitted state."""
        if self._module is None:
            self._module = self.build_scoring_module().eval()
        return self._module

    def _invalidate(self) -> None:
        self._module = None

    def predict(self, features: Features) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell grids ``(N, G, G)`` and image scores ``(N,)`` as float32 numpy arrays."""
        import torch

        check_features(features, self.feature_levels())
        module = self.scoring_module()
        n = features[0].shape[0]
        grids, scores = [], []
        with torch.inference_mode():
            for i in range(0, n, self.batch_size):
                g, s = module([f[i : i + self.batch_size] for f in features])
                grids.append(g.float().numpy())
                scores.append(s.float().numpy())
        return np.concatenate(grids), np.concatenate(scores)

    def training_scores(self, features: Features) -> np.ndarray:
        """Image scores of the training images the scorer was fitted on (for the suggested threshold).

        Defaults to :meth:`predict`; scorers that memorise training data (PatchCore) override
        it so an image is not scored against its own memorised patches.
        """
        return self.predict(features)[1]

    def training_scores_batches(self, batches: Iterable[Features]) -> np.ndarray:
        """:meth:`training_scores` over the stream :meth:`fit_batches` was given (default: concatenated)."""
        return self.training_scores(concat_batches(batches))

    def score(self, features: Features) -> np.ndarray:
        """Per-cell anomaly grid ``(N, G, G)``."""
        return self.predict(features)[0]


def concat_batches(batches: Iterable[Features]) -> "list[torch.Tensor]":
    """Concatenate a stream of feature-map batches level by level."""
    import torch

    batches = list(batches)
    if not batches:
        raise VadblocksError("no images to score (empty feature batch)")
    return [torch.cat([b[i] for b in batches]) for i in range(len(batches[0]))]


def check_features(features: Features, levels: int) -> None:
    """Validate feature maps handed to a scorer (count, rank, dtype, finiteness)."""
    import torch

    if len(features) < levels:
        raise VadblocksError(f"scorer needs {levels} feature level(s), got {len(features)}")
    n = None
    for i, f in enumerate(features[:levels]):
        if not isinstance(f, torch.Tensor) or f.ndim != 4:
            raise VadblocksError(f"feature level {i} must be a 4-D (N, C, H, W) tensor")
        if f.dtype != torch.float32:
            raise VadblocksError(f"feature level {i} must be float32, got {f.dtype}")
        if n is not None and f.shape[0] != n:
            raise VadblocksError("all feature levels must hold the same number of images")
        n = f.shape[0]
    if n == 0:
        raise VadblocksError("no images to score (empty feature batch)")
