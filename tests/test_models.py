"""bench.models: every model the project uses builds, trains one step, and has a CIFAR stem."""

from __future__ import annotations

import warnings

import pytest
import torch

from bench.errors import BenchError
from bench.models import build_model, count_params

MNIST, CIFAR = (1, 28, 28), (3, 32, 32)

CASES = [
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


# kuangliu/pytorch-cifar parameter counts for 10 classes (models/*.py, counted with the same
# structures): ResNet18 (BasicBlock), MobileNetV2, EfficientNetB0, GoogLeNet, ShuffleNetV2(1).
PYTORCH_CIFAR_PARAMS = {
    ("timm", "resnet18"): 11_173_962,
    ("timm", "mobilenetv2_100"): 2_296_922,
    ("timm", "efficientnet_b0"): 3_599_686,
    ("torchvision", "googlenet"): 6_166_250,
    ("torchvision", "shufflenet_v2_x1_0"): 1_263_854,
}


@pytest.mark.parametrize("source,name", list(PYTORCH_CIFAR_PARAMS))
def test_param_counts_match_pytorch_cifar(source, name):
    n = count_params(build_model(source, name, CIFAR, 10))
    ref = PYTORCH_CIFAR_PARAMS[(source, name)]
    assert abs(n - ref) / ref < 0.10, (n, ref)


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
