"""The paper's five CIFAR-10 networks, built as the widely used kuangliu/pytorch-cifar defines them.

ResNet-18, GoogLeNet, MobileNetV2, EfficientNet-B0 and ShuffleNetV2 (net_size 1) with the
reference's 3x3 stride-1 stems (no stem max-pool), block layouts, activations (ReLU; swish in
EfficientNet), shortcuts, biases and attribute names, so a reference state_dict loads into them
(EfficientNet-B0: all but the unused layers named in :data:`EFFICIENTNET_B0_UNUSED`).

Initialisation is PyTorch's default (each layer's ``reset_parameters``: Kaiming-uniform with
a = sqrt(5) for conv and linear weights, BatchNorm weight 1 and bias 0), as in the reference,
which calls no init function. The layers are registered in the reference's order, so under the
same ``torch.manual_seed`` the weights are bitwise those the reference draws.

Differences, also listed in docs/models.md:

* input channels and the number of classes come from the caller (the reference hard-codes 3 and,
  for GoogLeNet and ShuffleNetV2, 10);
* the final pooling is a global average (``adaptive_avg_pool2d(., 1)``): over the 4x4 (or 8x8,
  GoogLeNet) map of a 32x32 input that is the reference's fixed-size ``avg_pool2d``; other input
  sizes (MNIST's 28x28) work too instead of failing;
* EfficientNet-B0's first block (expansion 1) has no expansion conv and BatchNorm: the reference
  creates them but never calls them (1,088 parameters that get no gradient);
* EfficientNet-B0's drop-connect is absent: the reference's per-block rate is
  ``0.2 * b / blocks`` with ``b`` never incremented, so it is 0 for every block. Its dropout
  (0.2 before the classifier, in training) is kept.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# reference parameters that these models leave out (never used in the reference's forward)
EFFICIENTNET_B0_UNUSED = ("layers.0.conv1.weight", "layers.0.bn1.weight", "layers.0.bn1.bias")


# ----------------------------------------------------------------------------- ResNet-18


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm; a 1x1 conv + BN shortcut where the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(64, 2, stride=1)
        self.layer2 = self._make_layer(128, 2, stride=2)
        self.layer3 = self._make_layer(256, 2, stride=2)
        self.layer4 = self._make_layer(512, 2, stride=2)
        self.linear = nn.Linear(512, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


# ----------------------------------------------------------------------------- GoogLeNet


def _conv_bn_relu(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout), nn.ReLU(True)]


class Inception(nn.Module):
    """Four branches: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3 (the "5x5" branch); 3x3 max-pool -> 1x1."""

    def __init__(self, in_planes: int, n1x1: int, n3x3red: int, n3x3: int, n5x5red: int, n5x5: int,
                 pool_planes: int) -> None:
        super().__init__()
        self.b1 = nn.Sequential(*_conv_bn_relu(in_planes, n1x1, 1))
        self.b2 = nn.Sequential(*_conv_bn_relu(in_planes, n3x3red, 1), *_conv_bn_relu(n3x3red, n3x3, 3))
        self.b3 = nn.Sequential(*_conv_bn_relu(in_planes, n5x5red, 1), *_conv_bn_relu(n5x5red, n5x5, 3),
                                *_conv_bn_relu(n5x5, n5x5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), *_conv_bn_relu(in_planes, pool_planes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.pre_layers = nn.Sequential(*_conv_bn_relu(in_channels, 192, 3))
        self.a3 = Inception(192, 64, 96, 128, 16, 32, 32)
        self.b3 = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.a4 = Inception(480, 192, 96, 208, 16, 48, 64)
        self.b4 = Inception(512, 160, 112, 224, 24, 64, 64)
        self.c4 = Inception(512, 128, 128, 256, 24, 64, 64)
        self.d4 = Inception(512, 112, 144, 288, 32, 64, 64)
        self.e4 = Inception(528, 256, 160, 320, 32, 128, 128)
        self.a5 = Inception(832, 256, 160, 320, 32, 128, 128)
        self.b5 = Inception(832, 384, 192, 384, 48, 128, 128)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.b3(self.a3(self.pre_layers(x)))
        out = self.maxpool(out)
        out = self.e4(self.d4(self.c4(self.b4(self.a4(out)))))
        out = self.maxpool(out)
        out = self.b5(self.a5(out))
        return self.linear(torch.flatten(self.avgpool(out), 1))


# ----------------------------------------------------------------------------- MobileNetV2


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 project (linear); shortcut at stride 1 (1x1 conv + BN
    when the channel count changes)."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    # (expansion, out_planes, blocks, stride); the reference's CIFAR strides: stem and the
    # 24-channel stage at stride 1
    CFG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
           (6, 320, 1, 1))

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        layers, cin = [], 32
        for expansion, cout, blocks, stride in self.CFG:
            for s in [stride] + [1] * (blocks - 1):
                layers.append(InvertedResidual(cin, cout, expansion, s))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.conv2 = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


# ----------------------------------------------------------------------------- EfficientNet-B0


class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 conv (swish) -> 1x1 conv (sigmoid) -> channel scale; convs with bias."""

    def __init__(self, channels: int, se_channels: int) -> None:
        super().__init__()
        self.se1 = nn.Conv2d(channels, se_channels, 1, bias=True)
        self.se2 = nn.Conv2d(se_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.se2(F.silu(self.se1(F.adaptive_avg_pool2d(x, 1)))).sigmoid()
        return x * scale


class MBConv(nn.Module):
    """Expand (1x1, swish; absent at expansion 1) -> depthwise kxk (swish) -> squeeze-excite ->
    project (1x1, linear); identity shortcut where the shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expansion: int,
                 se_ratio: float = 0.25) -> None:
        super().__init__()
        channels = expansion * in_channels
        self.expand = expansion != 1
        if self.expand:
            self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
        else:
            # the reference builds this (unused) conv anyway; drawing its init keeps the random
            # stream, so every later layer gets the reference's weights under the same seed
            nn.init.kaiming_uniform_(torch.empty(channels, in_channels, 1, 1), a=math.sqrt(5))
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, stride=stride, padding=kernel_size // 2,
                               groups=channels, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.se = SqueezeExcite(channels, int(in_channels * se_ratio))
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.silu(self.bn1(self.conv1(x))) if self.expand else x
        out = self.se(F.silu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return out + x if self.has_skip else out


class EfficientNetB0(nn.Module):
    # (expansion, out_channels, blocks, kernel, stride) as in the reference's EfficientNetB0()
    CFG = ((1, 16, 1, 3, 1), (6, 24, 2, 3, 2), (6, 40, 2, 5, 2), (6, 80, 3, 3, 2), (6, 112, 3, 5, 1),
           (6, 192, 4, 5, 2), (6, 320, 1, 3, 1))

    def __init__(self, in_channels: int = 3, num_classes: int = 10, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = float(dropout)
        self.conv1 = nn.Conv2d(in_channels, 32, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        layers, cin = [], 32
        for expansion, cout, blocks, k, stride in self.CFG:
            for s in [stride] + [1] * (blocks - 1):
                layers.append(MBConv(cin, cout, k, s, expansion))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(320, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.silu(self.bn1(self.conv1(x))))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        out = F.dropout(out, p=self.dropout, training=self.training)
        return self.linear(out)


# ----------------------------------------------------------------------------- ShuffleNetV2


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """[N, C, H, W] -> [N, g, C/g, H, W] -> [N, C/g, g, H, W] -> [N, C, H, W]."""
    n, c, h, w = x.shape
    # reshape, not view: a channels_last input may not be viewable this way
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """Stride-1 unit: half the channels pass, the other half go 1x1 -> 3x3 depthwise -> 1x1; shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Conv2d(half, half, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, stride=1, padding=1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1] // 2
        x1, x2 = x[:, :c], x[:, c:]
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return channel_shuffle(torch.cat([x1, out], 1))


class ShuffleDown(nn.Module):
    """Stride-2 unit: left 3x3 depthwise/2 -> 1x1; right 1x1 -> 3x3 depthwise/2 -> 1x1; concat, shuffle."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=1, groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, stride=2, padding=1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return channel_shuffle(torch.cat([left, right], 1))


SHUFFLENET_SIZES: dict[float, tuple[tuple[int, int, int, int], tuple[int, int, int]]] = {
    0.5: ((48, 96, 192, 1024), (3, 7, 3)),
    1.0: ((116, 232, 464, 1024), (3, 7, 3)),
    1.5: ((176, 352, 704, 1024), (3, 7, 3)),
    2.0: ((224, 488, 976, 2048), (3, 7, 3)),
}


class ShuffleNetV2(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10, net_size: float = 1.0) -> None:
        super().__init__()
        out_channels, blocks = SHUFFLENET_SIZES[float(net_size)]
        self.conv1 = nn.Conv2d(in_channels, 24, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_channels = 24
        self.layer1 = self._make_layer(out_channels[0], blocks[0])
        self.layer2 = self._make_layer(out_channels[1], blocks[1])
        self.layer3 = self._make_layer(out_channels[2], blocks[2])
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)

    def _make_layer(self, out_channels: int, blocks: int) -> nn.Sequential:
        layers: list[nn.Module] = [ShuffleDown(self.in_channels, out_channels)]
        layers += [ShuffleUnit(out_channels) for _ in range(blocks)]
        self.in_channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # no stem max-pool (CIFAR)
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


# name -> (class, its params with their defaults); bench.models.zoo checks params against these
CIFAR_MODELS: dict[str, tuple[type[nn.Module], dict[str, object]]] = {
    "resnet18": (ResNet18, {}),
    "googlenet": (GoogLeNet, {}),
    "mobilenetv2": (MobileNetV2, {}),
    "efficientnet_b0": (EfficientNetB0, {"dropout": 0.2}),
    "shufflenetv2": (ShuffleNetV2, {"net_size": 1.0}),
}

__all__ = ["CIFAR_MODELS", "EFFICIENTNET_B0_UNUSED", "EfficientNetB0", "GoogLeNet", "MobileNetV2", "ResNet18",
           "ShuffleNetV2", "channel_shuffle"]
