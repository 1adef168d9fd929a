"""PatchCore (Roth et al. 2022, "Towards Total Recall in Industrial Anomaly Detection").

Locally aware patch features (neighbourhood average pooling, deeper maps upsampled to the
stride-8 grid and concatenated), a greedy k-center coreset chosen on a seeded random
projection, and nearest-neighbour distances to that memory bank. The image score is the mean of
the ``top-patches`` largest patch distances, optionally reweighted as in the paper (softmax over the
distances from the most anomalous patch to the nearest bank entry's neighbourhood).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Sequence

import numpy as np

from framework import hookimpl
from framework.errors import VadblocksError
from framework.params import Param, Search
from framework.scorer import Features, HeldOutScores, Scorer, check_features

if TYPE_CHECKING:  # pragma: no cover - torch is imported on use (patchcore_module.py)
    import torch
    from torch import nn

CHUNK_PATCHES = 8192  # stage-1 coreset chunk: up to 2x this many training patches get the exact coreset
HOLDOUT_PATCHES = 200_000  # patches searched for the substitutes of held-out bank entries
HOLDOUT_BYTES = 128 << 20  # the candidates for them kept after a fit (a seeded subset beyond this)
SUBSTITUTE_CHOICES = 16  # nearest candidates kept per bank entry, shared by every holdout (the first not held out)
MAX_BANK_BYTES = 1 << 30  # the bank is baked into model.onnx / model.tflite (a flatbuffer stays under 2 GB)


class PatchCore(Scorer):
    name: ClassVar[str] = "patchcore"
    description: ClassVar[str] = "coreset memory bank + k nearest neighbours (accurate; for capable targets)"
    parameters: ClassVar[tuple[Param, ...]] = (
        Param(
            "num-layers",
            "int",
            2,
            "Backbone feature levels to use: 1 = stride 8 only, 2 adds stride 16, 3 adds stride 32",
            label="Number of layers",
            min=1,
            max=3,
        ),
        Param(
            "pool-size",
            "int",
            3,
            "Neighbourhood average pooling window around each patch (odd; 1 = none)",
            label="Pool size",
            min=1,
            max=9,
            search=Search(1, 5, step=2),
        ),
        Param(
            "keep-unpooled",
            "boolean",
            True,
            "Also keep the stride-8 level unpooled beside the pooled levels "
            "(pool size above 1): pooled features see a patch's neighbourhood, unpooled ones keep small defects "
            "sharp",
            label="Keep unpooled features",
            before=False,
        ),
        Param(
            "sampling-ratio",
            "float",
            0.1,
            "Fraction of training patches kept in the coreset memory bank",
            label="Sampling ratio",
            min=0.0001,
            max=1.0,
            search=Search(0.01, 0.25, log=True),
        ),
        Param(
            "top-patches",
            "int",
            3,
            "Image score: the mean distance of this many most anomalous patches (1 = the largest alone; "
            "a few patches that agree are steadier than one)",
            label="Patches in the image score",
            min=1,
            max=16,
            search=Search(1, 5),
            before=1,
        ),
        Param(
            "num-nearest-neighbors",
            "int",
            1,
            "Nearest neighbours of a memory-bank entry used to reweight the image score as in the PatchCore "
            "paper (1 = no reweighting)",
            label="Number of nearest neighbors",
            min=1,
            max=100,
            search=Search(1, 15),
        ),
    )
    seed: ClassVar[int] = 0

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["pool_size"] % 2 == 0:
            raise VadblocksError(f"--pool-size: {self.params['pool_size']} is not valid; expected an odd number")
        self.bank: "torch.Tensor | None" = None
        self.bank_knn: "torch.Tensor | None" = None
        self._bank_images: "torch.Tensor | None" = None  # training image index of each bank entry
        # (patches, owners) standing for every training patch (the coreset's stage-1 selections), kept from
        # fit_batches for holdout(); not part of the saved state
        self._candidates: "tuple[torch.Tensor, torch.Tensor] | None" = None
        self._choices: "torch.Tensor | None" = None  # per bank entry its nearest candidates (_substitute_choices)
        self.coreset_stats: dict[str, Any] = {}

    def feature_levels(self) -> int:
        return self.params["num_layers"]

    def grid_size(self, input_size: int) -> int:
        return input_size // 8

    def fit(self, features: Features) -> "PatchCore":
        return self.fit_batches([features])

    def fit_batches(self, batches: Iterable[Features], groups: np.ndarray | None = None) -> "PatchCore":
        """Stream the training patches into the two-stage coreset (exact up to 2 chunks of patches).

        Each bank entry remembers the training image it came from (``groups`` maps augmented copies to
        their source image), so an image can later be scored without its own memory.
        """
        import torch

        from blocks.scorers.coreset import StreamingCoreset
        from blocks.scorers.patchcore_module import bank_neighbours, patches_of

        stream = StreamingCoreset(self.params["sampling_ratio"], CHUNK_PATCHES, self.seed)
        n_images = 0
        with torch.inference_mode():
            for features in batches:
                check_features(features, self.feature_levels())
                x = patches_of(features, *self._embedding())
                n, l, c = x.shape
                ids = np.arange(n_images, n_images + n) if groups is None else groups[n_images : n_images + n]
                if len(ids) != n:
                    raise VadblocksError(f"groups has {len(groups)} entries but the stream holds more images")
                stream.add(x.reshape(n * l, c).numpy(), np.repeat(ids, l))
                n_images += n
        if not n_images:
            raise VadblocksError("no images to fit (empty feature stream)")
        bank, owners = stream.finish()
        if bank.nbytes > MAX_BANK_BYTES:
            raise VadblocksError(
                f"the memory bank would hold {len(bank):,} entries x {bank.shape[1]} channels "
                f"({bank.nbytes / 2**30:.1f} GiB), over the {MAX_BANK_BYTES >> 30} GiB limit "
                "(model files hold the bank; TFLite files cannot exceed 2 GB): lower --sampling-ratio"
            )
        self.coreset_stats = stream.stats
        if stream.candidates is not None:
            points, who = stream.candidates
            keep = min(HOLDOUT_PATCHES, HOLDOUT_BYTES // max(1, points.shape[1] * points.itemsize))
            if len(points) > keep:  # a seeded subset bounds memory and the substitute search
                pick = np.sort(np.random.default_rng(self.seed).choice(len(points), keep, replace=False))
                points, who = points[pick], who[pick]
            self._candidates = (torch.from_numpy(np.ascontiguousarray(points)), torch.from_numpy(who))
            self._choices = None
        bank = torch.from_numpy(np.ascontiguousarray(bank))
        self._bank_images = torch.from_numpy(owners)
        self._set_bank(bank, bank_neighbours(bank, self.params["num_nearest_neighbors"]))
        return self

    def training_scores(self, features: Features) -> np.ndarray:
        return self.training_scores_batches([features])

    def holdout(self, held: np.ndarray, kept: Iterable[Features] | None = None) -> "PatchCore":
        """This PatchCore as if fitted without the training images ``held``: their bank entries are
        replaced by the nearest patch of the other training images (dropped, with nothing in their place,
        when ``kept`` is None).

        A coreset entry stands for every training patch near it, not only its own image's: dropping the
        held-out images' entries would also uncover what the kept images share with them (the corner cells
        of an asymmetrically padded backbone, one entry for all 200 images, scored 58 against 26 on
        held-out leather). The substitutes keep covered what a coreset of the kept images would cover.
        They are searched among the patches the coreset's first stage selected from the other images
        (every training patch lies within the stage-1 radius of one); a PatchCore restored from a file
        has no such record and searches the patches that ``kept`` streams instead.
        """
        import torch

        from blocks.scorers.patchcore_module import bank_neighbours

        drop, subs = self._held_entries(held, kept)
        bank = torch.cat([self.bank[~drop], subs]).contiguous()
        if not len(bank):
            raise VadblocksError("holding out these images would leave the memory bank empty")
        copy = type(self)(**self.params)
        copy._bank_images = torch.cat([self._bank_images[~drop], torch.full((len(subs),), -1)])  # -1: a substitute
        copy._set_bank(bank, bank_neighbours(bank, self.params["num_nearest_neighbors"]))
        return copy

    def holdout_predict(
        self, held: np.ndarray, kept: Iterable[Features], inputs: Sequence[Features], own: int | None = None
    ) -> list[HeldOutScores]:
        """:meth:`Scorer.holdout_predict`. Without the score reweighting (one neighbour), a patch's distance to a
        bank is the smallest of its distances to the bank's parts, so the bank without the held-out entries is
        scanned once: the substituted copy adds the few substitutes, and the held images' leave-one-image-out
        scores (``own``) add the held-out entries other than each image's own."""
        import torch

        from blocks.scorers.patchcore_module import top_mean

        if self.params["num_nearest_neighbors"] > 1:
            return super().holdout_predict(held, kept, inputs, own)
        drop, subs = self._held_entries(held, kept)
        if not bool((~drop).any()):
            raise VadblocksError("holding out these images would leave the memory bank empty")
        strict, extra, fold = (self._part(rows) for rows in (self.bank[~drop], subs, self.bank[drop]))

        def score(grids: np.ndarray) -> np.ndarray:
            patch = torch.from_numpy(grids.reshape(len(grids), -1))
            return top_mean(patch, patch.amax(dim=1, keepdim=True), self.params["top_patches"]).numpy()

        out = []
        for i, x in enumerate(inputs):
            strict_grids, strict_scores = strict.predict(x)
            grids = np.minimum(strict_grids, extra.predict(x)[0]) if len(subs) else strict_grids
            result = HeldOutScores(grids, score(grids), strict_scores)
            if i == own:  # each held image also meets the held-out entries that are not its own
                others = fold._without_own(x, held, self._bank_images[drop])[0] if bool(drop.any()) else strict_grids
                result.leave_one_out = score(np.minimum(strict_grids, others))
            out.append(result)
        return out

    def _part(self, rows: "torch.Tensor") -> "PatchCore":
        """A copy scoring against the bank rows ``rows`` alone (no reweighting)."""
        import torch

        part = type(self)(**self.params)
        part._set_bank(rows.contiguous(), torch.arange(len(rows))[:, None])
        return part

    def _held_entries(self, held: np.ndarray, kept: Iterable[Features] | None) -> "tuple[torch.Tensor, torch.Tensor]":
        """The bank entries learned from ``held`` (bool mask) and their unique substitutes (see :meth:`holdout`;
        none when ``kept`` is None)."""
        import torch

        from blocks.scorers.patchcore_module import nearest_patches, patches_of

        if self.bank is None or self._bank_images is None:
            raise VadblocksError("PatchCore holdout() needs a bank fitted by fit_batches")
        held_t = torch.as_tensor(np.asarray(held, np.int64))
        drop = torch.isin(self._bank_images, held_t)
        if kept is None:
            return drop, self.bank[:0]
        entries, found = self.bank[drop], self.bank[:0]
        if self._candidates is not None:
            points, owners = self._candidates
            # each dropped entry's nearest candidates, found once for all holdouts: the first not held out is
            # its substitute; the entries whose every choice is held out are searched below
            choices = self._substitute_choices()[drop]
            free = ~torch.isin(owners[choices], held_t)
            first = free.int().argmax(1)
            chosen = free.any(1)
            found = points[choices[chosen, first[chosen]]]
            entries = entries[~chosen]
            # in blocks of a chunk: each block of candidates stays in cache while every held-out entry meets it
            flat: Iterable[torch.Tensor] = points[~torch.isin(owners, held_t)].split(CHUNK_PATCHES)
        else:
            flat = (p.reshape(-1, p.shape[-1]) for p in (patches_of(f, *self._embedding()) for f in kept))
        subs, dist = nearest_patches(entries, flat, HOLDOUT_PATCHES) if len(entries) else (entries, entries[:, 0])
        return drop, torch.unique(torch.cat([found, subs[torch.isfinite(dist)]]), dim=0)

    def _substitute_choices(self) -> "torch.Tensor":
        """Indices (M, SUBSTITUTE_CHOICES) of each bank entry's nearest candidates, nearest first (computed once
        per fit: every holdout shares them)."""
        from blocks.scorers.patchcore_module import nearest_rows

        if self._choices is None:
            assert self._candidates is not None and self.bank is not None
            self._choices = nearest_rows(self.bank, self._candidates[0], SUBSTITUTE_CHOICES)
        return self._choices

    def _without_own(
        self, features: Features, images: np.ndarray, owners: "torch.Tensor | None"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Grids and scores of ``features`` (training images ``images``, in order), each scored without the bank
        entries that ``owners`` (the training image of each entry; None: exclude nothing) gives its image."""
        import torch

        ids = torch.as_tensor(np.asarray(images, np.int64))
        module, grids, scores = self.scoring_module(), [], []
        with torch.inference_mode():
            for i in range(0, len(ids), self.batch_size):
                exclude = None if owners is None else ids[i : i + self.batch_size, None] == owners[None, :]
                g, sc = module([f[i : i + self.batch_size] for f in features], exclude=exclude)
                grids.append(g.numpy())
                scores.append(sc.numpy())
        return np.concatenate(grids), np.concatenate(scores)

    def training_scores_batches(self, batches: Iterable[Features]) -> np.ndarray:
        """Leave-one-image-out scores: each training image is scored without its own bank entries.

        Scoring an image against patches memorised from itself gives distances near 0 and a
        threshold that every unseen normal image exceeds; excluding them estimates how
        normal unseen images score. ``batches`` must be the stream given to :meth:`fit_batches`.
        """
        import torch
        from tqdm.auto import tqdm

        owners = self._bank_images
        if owners is not None and len(torch.unique(owners)) < 2:
            owners = None  # a single training image: nothing would be left to compare with
        out, offset = [], 0
        for features in tqdm(
            batches, desc="threshold", unit="batch", disable=not self.verbose, leave=False, mininterval=1.0
        ):
            check_features(features, self.feature_levels())
            n = features[0].shape[0]
            out.append(self._without_own(features, np.arange(offset, offset + n), owners)[1])
            offset += n
        if owners is not None and int(owners.max()) >= offset:
            raise VadblocksError(
                f"training_scores got {offset} images but the bank was fitted on more; pass the training set fit() saw"
            )
        return np.concatenate(out)

    def _embedding(self) -> tuple[int, int, bool]:
        """(feature levels, pool size, keep unpooled): how patch features are made (patchcore_module.embed)."""
        return self.feature_levels(), self.params["pool_size"], self.params["keep_unpooled"]

    def _set_bank(self, bank: "torch.Tensor", knn: "torch.Tensor") -> None:
        self.bank, self.bank_knn = bank, knn
        self._invalidate()

    def build_scoring_module(self) -> "nn.Module":
        from blocks.scorers.patchcore_module import PatchCoreModule

        if self.bank is None or self.bank_knn is None:
            raise VadblocksError("PatchCore is not fitted: call fit() on normal images first")
        return PatchCoreModule(self.bank, self.bank_knn, *self._embedding(), top_patches=self.params["top_patches"])

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.bank is None or self.bank_knn is None:
            raise VadblocksError("PatchCore is not fitted")
        arrays = {"bank": self.bank.numpy(), "bank_knn": self.bank_knn.numpy()}
        if self._bank_images is not None:
            arrays["bank_images"] = self._bank_images.numpy()
        return (
            arrays,
            {
                "bank_size": int(self.bank.shape[0]),
                "feature_dim": int(self.bank.shape[1]),
                "coreset": self.coreset_stats,
            },
        )

    def set_state(self, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> "PatchCore":
        bank, knn = arrays.get("bank"), arrays.get("bank_knn")
        if bank is None or knn is None or bank.ndim != 2 or knn.ndim != 2 or knn.shape[0] != bank.shape[0]:
            raise VadblocksError("PatchCore state is corrupt: expected arrays bank (M, C) and bank_knn (M, k)")
        import torch

        self._set_bank(
            torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(knn, dtype=np.int64)),
        )
        owners = arrays.get("bank_images")
        self._bank_images = None if owners is None else torch.from_numpy(owners.astype(np.int64))
        return self


@hookimpl
def register_scorers(register):
    register(PatchCore)
