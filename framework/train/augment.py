"""Memory augmentation: flipped and rotated copies of the training images join what the scorer learns.

A texture seen upside down or turned by 90 degrees is still normal on most surfaces, so adding the
training images' flips and quarter turns to PatchCore's memory bank (or GMM's data) lets a small
training set cover more of what normal looks like. Only the fit sees the copies: training scores,
the threshold and validation are taken on the original images, and each copy counts as its source
image (PatchCore never scores an image against memorised patches of its own copies).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from framework.training_params import AUGMENT_MODES

Transform = Callable[[np.ndarray], np.ndarray]  # (N, H, W, C) -> (N, H, W, C)

_FLIPS: tuple[Transform, ...] = (lambda x: x[:, :, ::-1], lambda x: x[:, ::-1])
_TURNS: tuple[Transform, ...] = tuple(lambda x, k=k: np.rot90(x, k, axes=(1, 2)) for k in (1, 2, 3))
_MIRRORED_TURNS: tuple[Transform, ...] = tuple(lambda x, k=k: np.rot90(x[:, :, ::-1], k, axes=(1, 2)) for k in (1, 3))

MODES: dict[str, tuple[Transform, ...]] = {
    "none": (),
    "flips": _FLIPS,  # horizontal and vertical mirror images: 3x the training data
    "rot90": _TURNS,  # quarter, half and three-quarter turns: 4x
    "dihedral": _FLIPS + _TURNS + _MIRRORED_TURNS,  # all 8 symmetries of the square: 8x
}
assert tuple(MODES) == AUGMENT_MODES  # declared in framework.training_params


def transforms(mode: str) -> tuple[Transform, ...]:
    """The extra copies ``mode`` adds (the identity is not included)."""
    return MODES[mode]


def copies(mode: str) -> int:
    """How many images the scorer learns from per training image (the original included)."""
    return 1 + len(MODES[mode])


def square_only(mode: str) -> bool:
    """Whether ``mode`` turns images by 90 degrees (which needs square images)."""
    return mode in ("rot90", "dihedral")
