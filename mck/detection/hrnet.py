"""HRNet keypoint network (docs/algorithms.md §D.2), the lab's HRNet-W32 variant with a stride-2 then stride-1 stem.

Module names follow the lab's ``hrnet_*.pth`` state dicts exactly (``conv1``, ``bn1``, ``conv2``, ``bn2``,
``layer1``, ``transition1..3``, ``stage2..4``, ``final_layer``), so those files load with ``strict=True``.
Output: raw heatmaps (B, joints, H/2, W/2), no activation.
"""
from __future__ import annotations

import torch
from torch import nn

BN_MOMENTUM = 0.1


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-5, momentum=BN_MOMENTUM)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=1, padding=1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = _bn(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class StageModule(nn.Module):
    """Exchange module: ``stage`` parallel branches of 4 BasicBlocks, fused into ``output_branches`` outputs."""

    def __init__(self, stage: int, output_branches: int, c: int):
        super().__init__()
        self.branches = nn.ModuleList()
        for i in range(stage):
            w = c * 2 ** i
            self.branches.append(nn.Sequential(*[BasicBlock(w, w) for _ in range(4)]))
        self.fuse_layers = nn.ModuleList()
        for i in range(output_branches):
            row = nn.ModuleList()
            for j in range(stage):
                if i == j:
                    row.append(nn.Sequential())
                elif i < j:
                    row.append(nn.Sequential(
                        nn.Conv2d(c * 2 ** j, c * 2 ** i, 1, stride=1, bias=False), _bn(c * 2 ** i),
                        nn.Upsample(scale_factor=2.0 ** (j - i), mode="nearest")))
                else:
                    ops = []
                    for _ in range(i - j - 1):
                        ops.append(nn.Sequential(
                            nn.Conv2d(c * 2 ** j, c * 2 ** j, 3, stride=2, padding=1, bias=False), _bn(c * 2 ** j),
                            nn.ReLU(inplace=True)))
                    ops.append(nn.Sequential(
                        nn.Conv2d(c * 2 ** j, c * 2 ** i, 3, stride=2, padding=1, bias=False), _bn(c * 2 ** i)))
                    row.append(nn.Sequential(*ops))
            self.fuse_layers.append(row)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        x = [branch(b) for branch, b in zip(self.branches, x)]
        fused = []
        for row in self.fuse_layers:
            y = row[0](x[0])
            for j in range(1, len(self.branches)):
                y = y + row[j](x[j])
            fused.append(self.relu(y))
        return fused


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), _bn(cout),
                                       nn.ReLU(inplace=True)))


class HRNet(nn.Module):
    """HRNet with width ``c`` (32 in the lab's files), ``nof_joints`` heatmaps, ``in_channels`` input channels,
    ``stem_width`` stem/layer1 width (64 in the lab's files; layer1 outputs 4× that).

    forward: x (B, in_channels, H, W) in [0, 1] → heatmaps (B, nof_joints, H/2, W/2); H, W multiples of 32.
    """

    def __init__(self, c: int = 32, nof_joints: int = 15, in_channels: int = 1, stem_width: int = 64):
        super().__init__()
        self.c, self.nof_joints, self.in_channels, self.stem_width = c, nof_joints, in_channels, stem_width
        s = stem_width  # 64 in the lab's files; smaller for CPU demo nets
        self.conv1 = nn.Conv2d(in_channels, s, 3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(s)
        self.conv2 = nn.Conv2d(s, s, 3, stride=1, padding=1, bias=False)
        self.bn2 = _bn(s)
        self.relu = nn.ReLU(inplace=True)
        downsample = nn.Sequential(nn.Conv2d(s, 4 * s, 1, stride=1, bias=False), _bn(4 * s))
        self.layer1 = nn.Sequential(Bottleneck(s, s, downsample), Bottleneck(4 * s, s),
                                    Bottleneck(4 * s, s), Bottleneck(4 * s, s))
        self.transition1 = nn.ModuleList([
            nn.Sequential(nn.Conv2d(4 * s, c, 3, stride=1, padding=1, bias=False), _bn(c), nn.ReLU(inplace=True)),
            _down(4 * s, 2 * c)])
        self.stage2 = nn.Sequential(StageModule(2, 2, c))
        self.transition2 = nn.ModuleList([nn.Sequential(), nn.Sequential(), _down(2 * c, 4 * c)])
        self.stage3 = nn.Sequential(*[StageModule(3, 3, c) for _ in range(4)])
        self.transition3 = nn.ModuleList([nn.Sequential(), nn.Sequential(), nn.Sequential(), _down(4 * c, 8 * c)])
        self.stage4 = nn.Sequential(StageModule(4, 4, c), StageModule(4, 4, c), StageModule(4, 1, c))
        self.final_layer = nn.Conv2d(c, nof_joints, 1, stride=1)
        self.init_weights()

    def init_weights(self) -> None:
        """The official HRNet initialisation: conv weights N(0, 0.001²), biases 0, BatchNorm 1/0.

        With PyTorch's default init the untrained net outputs heatmaps of magnitude ~3 against targets that are
        ~0 almost everywhere, and a short (CPU, demo-size) training spends its first hundreds of steps shrinking
        them before any peak is learned; from this init the net localises keypoints after a few epochs.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        x = [t(x) for t in self.transition1]
        x = self.stage2(x)
        x = [self.transition2[0](x[0]), self.transition2[1](x[1]), self.transition2[2](x[-1])]
        x = self.stage3(x)
        x = [self.transition3[0](x[0]), self.transition3[1](x[1]), self.transition3[2](x[2]),
             self.transition3[3](x[-1])]
        x = self.stage4(x)
        return self.final_layer(x[0])
