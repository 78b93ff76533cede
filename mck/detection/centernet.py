"""CenterNet centroid network ("ConvNet", docs/algorithms.md §D.1): 4 × [conv3×3, BN, ReLU, maxpool2], 1×1 conv, sigmoid.

State-dict names match the lab's ``centernet.pth`` (``conv1..conv4``, ``bn1..bn4``, ``conv_final``).
Output stride 16 with respect to the input.
"""
from __future__ import annotations

import torch
from torch import nn


class ConvNet(nn.Module):
    """Centroid heatmap network.

    Parameters
    ----------
    initial_channels : int
        Width of the first block (32 in the lab's file); blocks are c, 2c, 4c, 4c.
    in_channels : int
        Input channels (1 = grey).
    """

    def __init__(self, initial_channels: int = 32, in_channels: int = 1):
        super().__init__()
        c = initial_channels
        widths = [in_channels, c, 2 * c, 4 * c, 4 * c]
        for i in range(4):
            setattr(self, f"conv{i + 1}", nn.Conv2d(widths[i], widths[i + 1], 3, stride=1, padding=1, bias=True))
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(widths[i + 1]))
        self.conv_final = nn.Conv2d(4 * c, 1, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.initial_channels = c
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x : (B, in_channels, H, W) in [0, 1] → (B, 1, H/16, W/16) in (0, 1)."""
        for i in range(1, 5):
            x = self.pool(self.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x))))
        return torch.sigmoid(self.conv_final(x))
