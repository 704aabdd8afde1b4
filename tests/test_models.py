"""bench.models.zoo: every model the project uses builds, trains one step, and has a CIFAR stem;
the native CIFAR-10 nets are pytorch-cifar's in structure, parameter count and initialisation."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

from bench.errors import BenchError
from bench.models.zoo import build_model, count_params
from bench.config.registry import load_registry

REPO = Path(__file__).resolve().parents[1]
MNIST, CIFAR = (1, 28, 28), (3, 32, 32)
NATIVE_CIFAR = ["resnet18", "googlenet", "mobilenetv2", "efficientnet_b0", "shufflenetv2"]

CASES = [
    *[("native", n, CIFAR) for n in NATIVE_CIFAR],
    *[("native", n, MNIST) for n in NATIVE_CIFAR],  # global pooling: 28x28 works too
    ("native", "mlp", MNIST),
    ("native", "mlp", CIFAR),
    ("native", "mlp", (1, 1, 8)),  # flat gauss data
    ("native", "cnn", MNIST),
    ("native", "cnn", CIFAR),
    ("timm", "resnet18", CIFAR),
    ("timm", "mobilenetv2_100", CIFAR),
    ("timm", "efficientnet_b0", CIFAR),
    ("torchvision", "googlenet", CIFAR),
    ("torchvision", "shufflenet_v2_x1_0", CIFAR),
    ("timm", "resnet18", MNIST),  # CIFAR stems keep the input's channel count
    ("torchvision", "googlenet", MNIST),
]


@pytest.mark.parametrize("source,name,shape", CASES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else v)
def test_forward_backward(source, name, shape):
    torch.manual_seed(0)
    model = build_model(source, name, shape, 10)
    model.train()
    out = model(torch.randn(2, *shape))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), pname


def _output_hw(model, module, shape=CIFAR):
    """Spatial size of ``module``'s output in an eval forward pass of ``model``."""
    seen = []

    def record(mod, args, out):  # must return None, or it would replace the output
        seen.append(tuple(out.shape[-2:]))

    hook = module.register_forward_hook(record)
    with torch.no_grad():
        model.eval()(torch.randn(1, *shape))
    hook.remove()
    return seen[0]


@pytest.mark.parametrize("name,module,side", [
    ("resnet18", "layer4", 4),  # pytorch-cifar: avg_pool2d(out, 4)
    ("googlenet", "b5", 8),  # AvgPool2d(8)
    ("mobilenetv2", "bn2", 4),
    ("efficientnet_b0", "layers", 2),
    ("shufflenetv2", "bn2", 4),
])
def test_native_cifar_spatial_size(name, module, side):
    """The map entering the global pool, for a 32x32 input: the size pytorch-cifar's fixed pools expect."""
    model = build_model("native", name, CIFAR, 10)
    assert _output_hw(model, getattr(model, module)) == (side, side)
    stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1) and stem.in_channels == 3


@pytest.mark.parametrize("source,name,side", [
    ("timm", "resnet18", 4),  # pytorch-cifar: avg_pool2d(out, 4)
    ("timm", "mobilenetv2_100", 4),
    ("timm", "efficientnet_b0", 2),
    ("torchvision", "googlenet", 8),  # pytorch-cifar: AvgPool2d(8)
    ("torchvision", "shufflenet_v2_x1_0", 4),
])
def test_cifar_stem_spatial_size(source, name, side):
    """Spatial size of the feature map entering the final global pool, for a 32x32 input."""
    model = build_model(source, name, CIFAR, 10)
    if source == "timm":
        with torch.no_grad():
            hw = tuple(model.eval().forward_features(torch.randn(1, *CIFAR)).shape[-2:])
    elif name == "googlenet":
        hw = _output_hw(model, model.inception5b)  # -> avgpool
    else:
        hw = _output_hw(model, model.conv5)  # -> x.mean([2, 3])
    assert hw == (side, side)


def test_googlenet_inception_resolutions():
    model = build_model("torchvision", "googlenet", CIFAR, 10)
    assert [_output_hw(model, getattr(model, f"inception{b}")) for b in ("3a", "4a", "5a")] == [
        (32, 32), (16, 16), (8, 8)]


def test_large_inputs_keep_imagenet_stem():
    model = build_model("timm", "resnet18", (3, 96, 96), 10)
    assert model.conv1.stride == (2, 2) and isinstance(model.maxpool, torch.nn.MaxPool2d)


def test_generic_timm_conversion():
    model = build_model("timm", "resnet10t", CIFAR, 10)  # deep stem: strided conv + maxpool
    with torch.no_grad():
        assert model.eval().forward_features(torch.randn(1, *CIFAR)).shape[-2:] == (4, 4)
    with pytest.warns(UserWarning, match="kept its stride"):  # patchify stem is left alone
        model = build_model("timm", "convnext_atto", CIFAR, 10)
    assert model.stem[0].stride == (4, 4)


# Parameter counts for 10 classes and 3x32x32 inputs. pytorch-cifar's (models/*.py, counted by
# building them): ResNet18 11,173,962; GoogLeNet 6,166,250; MobileNetV2 2,296,922; EfficientNetB0
# 3,599,686; ShuffleNetV2(1) 1,263,854. The native EfficientNet-B0 leaves out the reference's
# unused first-block expansion conv + BN (32*32 + 2*32 = 1,088). docs/models.md has the same table.
PARAM_COUNTS = {
    ("native", "resnet18"): 11_173_962,
    ("native", "googlenet"): 6_166_250,
    ("native", "mobilenetv2"): 2_296_922,
    ("native", "efficientnet_b0"): 3_599_686 - 1_088,
    ("native", "shufflenetv2"): 1_263_854,
    ("timm", "resnet18"): 11_173_962,
    ("torchvision", "googlenet"): 6_158_346,
    ("timm", "mobilenetv2_100"): 2_236_682,
    ("timm", "efficientnet_b0"): 3_598_598,
    ("torchvision", "shufflenet_v2_x1_0"): 1_263_854,
}


@pytest.mark.parametrize("source,name", list(PARAM_COUNTS))
def test_param_counts_pinned(source, name):
    assert count_params(build_model(source, name, CIFAR, 10)) == PARAM_COUNTS[(source, name)]


def test_models_doc_table_has_the_pinned_counts():
    """docs/models.md's table names each model with the count pinned above (so the two cannot drift)."""
    text = (REPO / "docs" / "models.md").read_text()
    for (source, name), n in PARAM_COUNTS.items():
        row = next((ln for ln in text.splitlines() if ln.startswith("|") and f"`{source}:{name}`" in ln), None)
        assert row is not None, f"docs/models.md has no row for {source}:{name}"
        assert f"{n:,}" in row, (row, n)


def test_cifar10_grids_use_the_native_nets():
    reg = load_registry(REPO / "registry.yaml")
    for gname, grid in reg.grids.items():
        if gname.startswith("cifar10") or gname.endswith("-cifar10"):
            for a in grid.architectures:
                spec = reg.architectures[a]
                assert (spec.source, spec.name) == ("native", a), (gname, a, spec)
    variants = {(s.source, s.name) for s in reg.architectures.values()}
    assert {k for k in PARAM_COUNTS if k[0] != "native"} <= variants  # the library variants stay selectable


# (sum, sum of |.|) of all parameters, float64, after torch.manual_seed(0), of pytorch-cifar's
# models built the same way (EfficientNetB0 without its unused layers): the same draws, in the
# same order, as the reference's default initialisation
REFERENCE_INIT = {
    "resnet18": (4818.4648634612795, 109470.11038317633),
    "googlenet": (7951.920649854409, 113467.97909256732),
    "mobilenetv2": (17566.999166245394, 96236.23138143946),
    "efficientnet_b0": (19764.11603920267, 148075.08580453915),
    "shufflenetv2": (8106.036867329109, 51393.61507085171),
}


@pytest.mark.parametrize("name", NATIVE_CIFAR)
def test_native_init_is_the_references(name):
    torch.manual_seed(0)
    params = list(build_model("native", name, CIFAR, 10).parameters())
    total = sum(p.double().sum().item() for p in params)
    absolute = sum(p.double().abs().sum().item() for p in params)
    assert (total, absolute) == pytest.approx(REFERENCE_INIT[name], rel=1e-10)


@pytest.mark.parametrize("name", NATIVE_CIFAR)
def test_native_init_is_pytorch_default(name):
    """Conv and linear weights Kaiming-uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BN 1 and 0.

    timm's ResNet-18 zero-initialises each block's last BN and its MobileNetV2 draws fan-out
    normals: a library init would fail the bound or the std check.
    """
    torch.manual_seed(0)
    model = build_model("native", name, CIFAR, 10)
    for mname, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            bound = 1 / math.sqrt(m.weight[0].numel())
            w = m.weight.detach()
            assert w.abs().max() <= bound, mname
            if w.numel() >= 1000:  # the uniform's std is bound / sqrt(3)
                assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1), mname
            if m.bias is not None:
                assert m.bias.detach().abs().max() <= bound, mname
        elif isinstance(m, torch.nn.BatchNorm2d):
            assert torch.equal(m.weight.detach(), torch.ones_like(m.weight)), mname
            assert torch.equal(m.bias.detach(), torch.zeros_like(m.bias)), mname


def test_native_blocks_as_in_pytorch_cifar():
    """The block details that set the native nets apart from the timm variants."""
    mb = build_model("native", "mobilenetv2", CIFAR, 10)
    acts = {type(m).__name__ for m in mb.modules()}
    assert "ReLU6" not in acts  # ReLU through F.relu, as the reference
    first = mb.layers[0]  # 32 -> 16 at stride 1: a 1x1 conv + BN shortcut (timm has none)
    assert isinstance(first.shortcut[0], torch.nn.Conv2d) and first.shortcut[0].out_channels == 16
    eff = build_model("native", "efficientnet_b0", CIFAR, 10)
    assert eff.dropout == 0.2 and eff.layers[0].se.se1.out_channels == 8  # SE from the block input (32 * 0.25)
    assert build_model("native", "efficientnet_b0", CIFAR, 10, {"dropout": 0.0}).dropout == 0.0
    g = build_model("native", "googlenet", CIFAR, 10)
    assert len([m for m in g.a3.b3 if isinstance(m, torch.nn.Conv2d)]) == 3  # 1x1, then two 3x3 for "5x5"
    assert g.pre_layers[0].bias is not None  # the reference's convs keep their bias
    half = build_model("native", "shufflenetv2", CIFAR, 10, {"net_size": 0.5})
    assert half.linear.in_features == 1024 and half.layer1[0].conv2.out_channels == 24
    with pytest.raises(BenchError, match="net_size"):
        build_model("native", "shufflenetv2", CIFAR, 10, {"net_size": 3})
    with pytest.raises(BenchError, match="resnet18 param"):
        build_model("native", "resnet18", CIFAR, 10, {"depth": 34})


def test_paper_mlp_and_params():
    assert count_params(build_model("native", "mlp", MNIST, 10)) == 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
    assert count_params(build_model("native", "mlp", MNIST, 10, {"hidden": [32]})) == 784 * 32 + 32 + 32 * 10 + 10


@pytest.mark.parametrize("args,hint", [
    (("native", "mpl"), "'mlp'"),
    (("timm", "resnet81"), "'resnet18'"),
    (("torchvision", "googlenett"), "'googlenet'"),
    (("timmm", "resnet18"), "'timm'"),
])
def test_unknown_names(args, hint):
    with pytest.raises(BenchError, match="unknown") as err:
        build_model(*args, CIFAR, 10)
    assert hint in str(err.value)


def test_bad_inputs():
    with pytest.raises(BenchError, match="hidden"):
        build_model("native", "mlp", MNIST, 10, {"hiden": [8]})
    with pytest.raises(BenchError, match="at least 16x16"):
        build_model("native", "cnn", (1, 8, 8), 10)
    with pytest.raises(BenchError, match="in_shape"):
        build_model("native", "mlp", (28, 28), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(BenchError, match="bad params"):
            build_model("timm", "resnet18", CIFAR, 10, {"not_a_kwarg": 1})
