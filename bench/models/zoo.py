"""Model zoo: the paper's MNIST nets and CIFAR-10 nets (native), and CIFAR variants of timm / torchvision nets.

``build_model(source, name, in_shape, num_classes, params)`` is the one entry point.

Your own model (``source: target``): ``name`` is ``module:Class`` (or ``module:function``), imported
like a loss target (installed packages, then the registry's folder and the working folder) and
called as ``Class(in_shape=(C, H, W), num_classes=K, **params)``; it must return an ``nn.Module``
mapping a ``[B, C, H, W]`` batch to ``[B, K]`` logits (bench.plan.architectures checks that before
anything trains).

Native CIFAR-10 nets. The paper trains "the CIFAR variants, 32x32 input" of GoogLeNet, ResNet-18,
MobileNetV2, EfficientNet-B0 and ShuffleNetV2, i.e. the widely used kuangliu/pytorch-cifar
definitions. ``native`` ``resnet18``, ``googlenet``, ``mobilenetv2``, ``efficientnet_b0`` and
``shufflenetv2`` are those definitions, with PyTorch's default initialisation
(:mod:`bench.models.cifar`); the registry's ``cifar10`` grids use them. The library variants
below stay selectable; docs/models.md compares the two (parameters, stem, init).

Library variants. When both H and W are <= 64 the ImageNet stems of timm / torchvision models
are converted to the CIFAR layout (the number of input channels always comes from ``in_shape``,
so MNIST's 1 channel works). They keep their libraries' blocks and initialisation, which differ
from pytorch-cifar's (docs/models.md):

* timm ``resnet18/34/50`` : conv1 -> 3x3 stride 1 pad 1, maxpool -> Identity
  (32 -> 32 at layer1, 4x4 before the global pool).
* timm ``mobilenetv2_100``: conv_stem stride 2 -> 1 and the first block of the 24-channel
  stage (blocks[1][0]) stride 2 -> 1, as pytorch-cifar does (4x4 before the pool).
* timm ``efficientnet_b0``: conv_stem (already 3x3) stride 2 -> 1. The block strides of timm's
  B0 (1,2,2,2,1,2,1) already equal pytorch-cifar's, so no block changes (2x2 before the pool).
  pytorch-cifar's EfficientNetB0 has no 320 -> 1280 conv head: conv_head and bn2 (+ its SiLU)
  become Identity and the classifier reads the 320 block features directly.
* any other timm model (generic): in the stem (modules registered before the first
  ``feature_info`` stage with reduction >= 4) the first Conv2d with stride > 1 gets stride 1 and
  the first MaxPool2d becomes Identity. A conv is only changed when its padding is "same" for
  stride 1 (odd kernel, padding = dilation*(k-1)/2); patchify stems (ViT, ConvNeXt: k = stride,
  padding 0) and models without ``feature_info`` are left as they are, with a warning.
* torchvision ``googlenet``: conv1 -> BasicConv2d(C, 192, 3x3, stride 1, pad 1) (pytorch-cifar's
  pre-layer); conv2, conv3, maxpool1, maxpool2 -> Identity. Spatial: 32 at inception3a,
  16 at 4a, 8 at 5a and into the pool. Each Inception's third branch gets a second 3x3
  BasicConv2d, as in pytorch-cifar (torchvision has a single 3x3 there, a documented
  deviation from the paper's 5x5); without it the net has 11% fewer parameters.
* torchvision ``shufflenet_v2_x1_0``: conv1 stride 2 -> 1, maxpool -> Identity (4x4 before pool).

Dropout is left at each library's default (timm: 0; torchvision googlenet: 0.2 before fc);
set it through ``params`` (timm ``drop_rate``/``drop_path_rate``, torchvision ``dropout``).
"""

from __future__ import annotations

import inspect
import operator
import warnings
from collections.abc import Callable, Sequence

from torch import nn

from bench.errors import BenchError, unknown

CIFAR_MAX_HW = 64  # inputs with H and W at most this get the CIFAR stems


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _take(params: dict, defaults: dict, what: str) -> dict:
    """Merge ``params`` into ``defaults``, refusing keys that are not in ``defaults``."""
    for key in params:
        if key not in defaults:
            raise unknown(f"{what} param", key, defaults)
    return {**defaults, **params}


# ----------------------------------------------------------------------------- native


def _mlp(in_shape, num_classes, params):
    p = _take(params, {"hidden": [64, 64]}, "mlp")
    c, h, w = in_shape
    layers: list[nn.Module] = [nn.Flatten()]
    width = c * h * w
    for hidden in p["hidden"]:
        layers += [nn.Linear(width, int(hidden)), nn.ReLU()]
        width = int(hidden)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _cnn(in_shape, num_classes, params):
    p = _take(params, {"channels": [10, 20], "hidden": 50}, "cnn")
    c, h, w = in_shape
    c1, c2 = (int(v) for v in p["channels"])
    side = lambda n: ((n - 4) // 2 - 4) // 2  # noqa: E731  conv5 -> pool2 -> conv5 -> pool2
    fh, fw = side(h), side(w)
    if fh < 1 or fw < 1:
        raise BenchError(f"cnn needs inputs of at least 16x16, got {h}x{w}; use 'mlp' instead")
    return nn.Sequential(
        nn.Conv2d(c, c1, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(c1, c2, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c2 * fh * fw, int(p["hidden"])), nn.ReLU(),
        nn.Linear(int(p["hidden"]), num_classes),
    )


def _cifar_native(name: str) -> Callable:
    """A builder of bench.models.cifar' ``name`` (pytorch-cifar's definition, default init)."""
    def build(in_shape, num_classes, params):
        from bench.models.cifar import CIFAR_MODELS

        cls, defaults = CIFAR_MODELS[name]
        p = _take(params, defaults, name)
        if name == "shufflenetv2":
            from bench.models.cifar import SHUFFLENET_SIZES

            if float(p["net_size"]) not in SHUFFLENET_SIZES:
                raise BenchError(f"shufflenetv2 net_size must be one of {sorted(SHUFFLENET_SIZES)}, got {p['net_size']!r}")
        return cls(in_channels=in_shape[0], num_classes=num_classes, **p)
    return build


NATIVE: dict[str, Callable] = {
    "mlp": _mlp,
    "cnn": _cnn,
    **{n: _cifar_native(n) for n in ("resnet18", "googlenet", "mobilenetv2", "efficientnet_b0", "shufflenetv2")},
}


def _build_native(name, in_shape, num_classes, params, cifar):
    if name not in NATIVE:
        raise unknown("native model", name, NATIVE)
    return NATIVE[name](in_shape, num_classes, params)


# ----------------------------------------------------------------------------- timm


def _same_padding_for_stride1(conv: nn.Conv2d) -> bool:
    if not isinstance(conv.padding, tuple):  # 'same' / 'valid' strings
        return False
    return all(k % 2 == 1 and p == d * (k - 1) // 2
               for k, p, d in zip(conv.kernel_size, conv.padding, conv.dilation))


def _cifar_resnet(model):
    old = model.conv1
    model.conv1 = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()


def _cifar_mobilenetv2(model):
    model.conv_stem.stride = (1, 1)
    model.blocks[1][0].conv_dw.stride = (1, 1)  # first block of the 24-channel stage


def _cifar_efficientnet(model):
    model.conv_stem.stride = (1, 1)
    # pytorch-cifar's EfficientNetB0 pools the last block's 320 channels: no 1280 conv head.
    model.num_features = model.conv_head.in_channels
    model.conv_head, model.bn2 = nn.Identity(), nn.Identity()
    model.reset_classifier(model.num_classes)


def _cifar_generic(model, name):
    info = getattr(model, "feature_info", None)
    stages = [f.get("module") for f in info if f.get("reduction", 0) >= 4] if isinstance(info, list) else []
    if not stages:
        warnings.warn(f"timm model {name!r}: no feature_info, kept its ImageNet stem", stacklevel=3)
        return
    boundary = stages[0]
    conv_seen = conv_changed = pool_seen = False
    for mod_name, module in list(model.named_modules()):
        if mod_name == boundary or mod_name.startswith(boundary + "."):
            break
        if not conv_seen and isinstance(module, nn.Conv2d) and max(module.stride) > 1:
            conv_seen = True  # only the stem's first strided conv is a candidate
            if _same_padding_for_stride1(module):
                module.stride, conv_changed = (1, 1), True
        elif not pool_seen and isinstance(module, nn.MaxPool2d):
            pool_seen = True
            parent, _, attr = mod_name.rpartition(".")
            setattr(model.get_submodule(parent), attr, nn.Identity())
    if not conv_changed:
        warnings.warn(f"timm model {name!r}: stem has no padded strided conv, kept its stride", stacklevel=3)


TIMM_CIFAR: dict[str, Callable] = {
    "resnet18": _cifar_resnet,
    "resnet34": _cifar_resnet,
    "resnet50": _cifar_resnet,
    "mobilenetv2_100": _cifar_mobilenetv2,
    "efficientnet_b0": _cifar_efficientnet,
}


def _build_timm(name, in_shape, num_classes, params, cifar):
    import timm

    arch = name.split(".", 1)[0]  # allow pretrained tags like 'resnet18.a1_in1k'
    if not timm.is_model(arch):
        raise unknown("timm model", name, timm.list_models())
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes,
                                  in_chans=in_shape[0], **params)
    except TypeError as err:
        raise BenchError(f"bad params for timm model {name!r}: {err}") from None
    if cifar:
        if arch in TIMM_CIFAR:
            TIMM_CIFAR[arch](model)
        else:
            _cifar_generic(model, name)
    return model


# ----------------------------------------------------------------------------- torchvision


def _googlenet(in_shape, num_classes, params, cifar):
    from torchvision.models import googlenet
    from torchvision.models.googlenet import BasicConv2d, Inception

    kwargs = {"aux_logits": False, "init_weights": True, "transform_input": False, **params}
    model = googlenet(weights=None, num_classes=num_classes, **kwargs)
    c, new = in_shape[0], []
    if cifar:
        model.conv1 = BasicConv2d(c, 192, kernel_size=3, stride=1, padding=1)
        model.conv2 = model.conv3 = nn.Identity()
        model.maxpool1 = model.maxpool2 = nn.Identity()
        new.append(model.conv1)
        for block in model.modules():  # pytorch-cifar: two stacked 3x3 in the "5x5" branch
            if isinstance(block, Inception):
                n5 = block.branch3[-1].conv.out_channels
                new.append(BasicConv2d(n5, n5, kernel_size=3, padding=1))
                block.branch3.append(new[-1])
    elif c != 3:
        model.conv1 = BasicConv2d(c, 64, kernel_size=7, stride=2, padding=3)
        new.append(model.conv1)
    if kwargs["init_weights"]:  # torchvision's init, for the convs added here
        for m in new:
            nn.init.trunc_normal_(m.conv.weight, mean=0.0, std=0.01, a=-2, b=2)
    return model


def _shufflenet_v2(in_shape, num_classes, params, cifar):
    from torchvision.models import shufflenet_v2_x1_0

    model = shufflenet_v2_x1_0(weights=None, num_classes=num_classes, **params)
    old = model.conv1[0]
    if cifar or in_shape[0] != old.in_channels:
        model.conv1[0] = nn.Conv2d(in_shape[0], old.out_channels, 3, stride=1 if cifar else 2,
                                   padding=1, bias=False)
    if cifar:
        model.maxpool = nn.Identity()
    return model


TORCHVISION: dict[str, Callable] = {"googlenet": _googlenet, "shufflenet_v2_x1_0": _shufflenet_v2}


def _build_torchvision(name, in_shape, num_classes, params, cifar):
    if name not in TORCHVISION:
        raise unknown("torchvision model", name, TORCHVISION)
    try:
        return TORCHVISION[name](in_shape, num_classes, params, cifar)
    except TypeError as err:
        raise BenchError(f"bad params for torchvision model {name!r}: {err}") from None


# ----------------------------------------------------------------------------- your own (source: target)


def _build_target(target: str, in_shape, num_classes, params, import_paths: Sequence[str]) -> nn.Module:
    from bench.config.registry import import_target

    builder = import_target(target, import_paths, what="architecture")
    if not callable(builder):
        raise BenchError(f"architecture target {target!r} is a {type(builder).__name__}, not a class or function")
    try:
        inspect.signature(builder).bind(in_shape=in_shape, num_classes=num_classes, **params)
    except TypeError as err:  # the signature refuses the arguments (an unknown param, a missing one)
        raise BenchError(f"architecture target {target!r} cannot take in_shape, num_classes and params "
                         f"{sorted(params)}: {err}") from None
    except ValueError:  # no signature to inspect (a builtin): let the call say
        pass
    model = builder(in_shape=in_shape, num_classes=num_classes, **params)
    if not isinstance(model, nn.Module):
        raise BenchError(f"architecture target {target!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


# ----------------------------------------------------------------------------- entry point

SOURCES: dict[str, Callable] = {
    "native": _build_native,
    "timm": _build_timm,
    "torchvision": _build_torchvision,
    "target": _build_target,  # called with the import paths (build_model)
}


def build_model(source: str, name: str, in_shape: tuple[int, int, int], num_classes: int,
                params: dict | None = None, import_paths: Sequence[str] = ()) -> nn.Module:
    """Build a freshly initialised classifier for inputs of shape ``in_shape`` = (C, H, W).

    CIFAR stems (see the module docstring) are used when H and W are both <= 64. ``import_paths``:
    where a ``target`` model's module is looked for after the installed packages
    (:meth:`bench.config.registry.Registry.import_paths`).
    """
    if source not in SOURCES:
        raise unknown("model source", source, SOURCES)
    try:
        shape = tuple(operator.index(v) for v in in_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise BenchError(f"in_shape must be three positive ints (C, H, W), got {in_shape!r}")
    try:
        k = operator.index(num_classes)
    except TypeError:
        k = 0
    if k < 2:
        raise BenchError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if source == "target":
        return _build_target(name, shape, k, dict(params or {}), import_paths)
    cifar = shape[1] <= CIFAR_MAX_HW and shape[2] <= CIFAR_MAX_HW
    return SOURCES[source](name, shape, k, dict(params or {}), cifar)


__all__ = ["build_model", "count_params", "NATIVE", "TIMM_CIFAR", "TORCHVISION", "SOURCES"]
