"""The ResNet variant of VICReg's and SIE's code (``model.backbone: resnet18_vicreg``).

It differs from torchvision's and timm's ResNet in four ways, all of which change the features
(not only the parameter names), so the paper recipes use it:

- the stem pads the input asymmetrically (2 left/top, 3 right/bottom) before a 7x7/2 convolution
  without padding, then pads right/bottom by one with -1e4 (never the max) before a 3x3/2 max-pool
  without padding;
- a stride-2 3x3 convolution has no built-in padding: its input is padded by one on the right and
  bottom only;
- every stage, layer1 included, has a 1x1 convolution + BN shortcut;
- the last BN of each residual branch starts at zero (``zero_init_residual``).

``width`` scales the channels ``(w, 2w, 4w, 8w)`` (64 is the paper's) for CPU runs;
``cifar_stem`` swaps the stem for a 3x3/1 convolution without max-pool (small images). The module
has ``num_features`` like a timm backbone and returns pooled ``[B, 8w]`` features. As in the
reference, the one-sided padding needs even sizes at every stride-2 step: image sides of 32, 64,
128 or 256 px work (with ``cifar_stem``, 16 and up), odd intermediate sizes fail.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# name -> blocks per stage (BasicBlock ResNets; the papers use ResNet-18).
DEPTHS = {"resnet18_vicreg": (2, 2, 2, 2), "resnet34_vicreg": (3, 4, 6, 3)}


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, shortcut: bool) -> None:
        super().__init__()
        # Stride sits on the second 3x3 convolution, as in the reference code.
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1 if stride == 1 else 0, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride = stride
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if shortcut
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        if self.stride == 2:
            out = F.pad(out, (0, 1, 0, 1))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class VICRegResNet(nn.Module):
    """BasicBlock ResNet with VICReg's stem and padding (see the module docstring)."""

    def __init__(self, depths=(2, 2, 2, 2), width: int = 64, cifar_stem: bool = False) -> None:
        super().__init__()
        self.cifar_stem = bool(cifar_stem)
        if self.cifar_stem:
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, 7, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.Identity() if self.cifar_stem else nn.MaxPool2d(3, 2, 0)
        cin = width
        stages = []
        for s, n in enumerate(depths):
            cout = width * 2**s
            blocks = [_Block(cin, cout, 1 if s == 0 else 2, shortcut=True)]
            blocks += [_Block(cout, cout, 1, shortcut=False) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, _Block):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cifar_stem:
            x = F.pad(x, (2, 3, 2, 3))
        x = F.relu(self.bn1(self.conv1(x)))
        if not self.cifar_stem:
            x = F.pad(x, (0, 1, 0, 1), value=-1e4)
        x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def build_vicreg_resnet(arch: dict) -> VICRegResNet:
    """The backbone an ``arch`` dict names (``backbone`` in :data:`DEPTHS`, ``width``, ``cifar_stem``)."""
    return VICRegResNet(
        DEPTHS[arch["backbone"]], width=int(arch.get("width") or 64), cifar_stem=bool(arch.get("cifar_stem"))
    )
