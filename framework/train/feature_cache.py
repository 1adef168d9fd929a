"""Backbone features shared between trainings that use the same backbone on the same images.

``vadblocks tune`` trains many configurations on one dataset; those that share a backbone (and its
parameters) and an image size see the same pixels, so their feature maps are the same. A
:class:`FeatureCache` handed to :func:`framework.train.pipeline.train` keeps every batch it extracts,
keyed by the backbone and the batch's bytes, and serves the stored maps to any later training that
needs as many feature levels or fewer (the first levels of a deeper cut are the same tensors). It
holds at most ``max_bytes``, dropping the least recently used batches first.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEFAULT_MAX_BYTES = 2 << 30


class FeatureCache:
    """A bounded, least-recently-used store of backbone feature batches."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._store: OrderedDict[tuple, tuple[int, list["torch.Tensor"], int]] = OrderedDict()  # levels, maps, bytes

    def features(
        self, backbone_key: tuple, levels: int, batch: np.ndarray, extract: Callable[[np.ndarray], list["torch.Tensor"]]
    ) -> list["torch.Tensor"]:
        """The first ``levels`` feature maps of ``batch``: stored ones when present, else ``extract(batch)``.

        ``backbone_key`` names the backbone and its parameters (what, besides the pixels, decides the maps).
        Callers must not modify the returned tensors in place.
        """
        digest = hashlib.blake2b(np.ascontiguousarray(batch).data, digest_size=16).hexdigest()
        key = (backbone_key, batch.shape, str(batch.dtype), digest)
        entry = self._store.get(key)
        if entry is not None and entry[0] >= levels:
            self._store.move_to_end(key)
            self.hits += 1
            return entry[1][:levels]
        self.misses += 1
        feats = extract(batch)
        if entry is not None:
            self._drop(key)
        size = sum(f.numel() * f.element_size() for f in feats)
        if size <= self.max_bytes:
            self._store[key] = (len(feats), feats, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                self._drop(next(iter(self._store)))
        return feats[:levels]

    def _drop(self, key: tuple) -> None:
        self.bytes -= self._store.pop(key)[2]

    def stats(self) -> dict[str, Any]:
        """Batches served from the cache, batches extracted, bytes held."""
        return {"hits": self.hits, "misses": self.misses, "bytes": self.bytes, "batches": len(self._store)}
