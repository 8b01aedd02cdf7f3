"""A small convolutional network over frames: the success classifier's and the behaviour-cloning
policy's image encoder (:mod:`hma.eval.success`, :mod:`hma.apps.bc_policy`)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from hma.errors import ConfigError


class SmallCNN(nn.Module):
    """Four stride-2 convolutions and a linear head: frames (B, H, W, 3) uint8 -> (B, out).

    ``grid``: the features are average-pooled to a grid x grid map before the head; 1 (a
    global pool) keeps no layout, larger grids keep where things are in the frame."""

    def __init__(self, out: int, width: int = 32, grid: int = 1) -> None:
        super().__init__()
        if grid < 1:
            raise ConfigError(f"grid={grid} is invalid, expected an integer >= 1")
        self.out, self.width, self.grid = out, width, grid
        chans = [3, width, 2 * width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.head = nn.Linear(4 * width * grid * grid, out)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = rearrange(frames, "b h w c -> b c h w").float() / 127.5 - 1.0  # (B, 3, H, W)
        x = self.pool(self.features(x)).flatten(1)  # (B, 4*width*grid^2)
        return self.head(x)  # (B, out)
