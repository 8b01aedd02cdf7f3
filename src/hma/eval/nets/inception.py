"""InceptionV3 as used for FID: the TensorFlow 2015-12-05 graph ported to PyTorch.

Reads the standard ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's FID weights) from
``weights`` or ``$HMA_FID_INCEPTION_WEIGHTS``; a .safetensors file with the same keys also
works. Key names follow torchvision's Inception3 (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1.bn.running_mean``, ...); the 1008-way ``fc.*`` head is ignored.

The FID graph differs from torchvision's Inception3 in two places, both reproduced here:
average pools inside the blocks exclude the zero padding (TensorFlow semantics), and the last
block (Mixed_7c) pools its branch with a max pool instead of an average pool.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hma.eval.nets._common import Unavailable, hub_checkpoint, load_feature_net, to_unit_nchw

FID_ENV = "HMA_FID_INCEPTION_WEIGHTS"
FID_FILE = "pytorch-fid's InceptionV3 FID weights (pt_inception-2015-12-05-6726825d.pth)"
FID_HUB_FILE = "pt_inception-2015-12-05-6726825d.pth"  # in the torch hub cache, where pytorch-fid downloads it
FID_FEATURE_DIM = 2048


class _Conv(nn.Module):
    """Conv without bias, BatchNorm (TensorFlow's eps 1e-3), ReLU: keys ``conv.*`` and ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool does not count the padded zeros.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    """35x35 block (Mixed_5b/c/d): 64 + 64 + 96 + pool_features channels."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1 = _Conv(cin, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_tf(x)),
        ], dim=1)


class _BlockB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a): 384 + 96 + cin channels."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], dim=1)


class _BlockC(nn.Module):
    """17x17 block with factorized 7x7 convolutions (Mixed_6b..e): 768 channels."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dbl = self.branch7x7dbl_3(self.branch7x7dbl_2(self.branch7x7dbl_1(x)))
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            self.branch7x7dbl_5(self.branch7x7dbl_4(dbl)),
            self.branch_pool(_avg_pool_tf(x)),
        ], dim=1)


class _BlockD(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a): 320 + 192 + cin channels."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(b7),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], dim=1)


class _BlockE(nn.Module):
    """8x8 block with split 3x3 convolutions (Mixed_7b/c): 2048 channels."""

    def __init__(self, cin: int, *, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool  # the FID graph's Mixed_7c quirk, see the module docstring
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool_tf(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pooled),
        ], dim=1)


class FIDInceptionV3(nn.Module):
    """InceptionV3 up to the 2048-d global average pool ("pool3"), the FID feature."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _BlockA(192, pool_features=32)
        self.Mixed_5c = _BlockA(256, pool_features=64)
        self.Mixed_5d = _BlockA(288, pool_features=64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, c7=128)
        self.Mixed_6c = _BlockC(768, c7=160)
        self.Mixed_6d = _BlockC(768, c7=160)
        self.Mixed_6e = _BlockC(768, c7=192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)

    def forward(self, x_nchw: torch.Tensor) -> torch.Tensor:
        """x: float (B, 3, H, W) in [0, 1] -> pool3 features (B, 2048)."""
        # As pytorch-fid: bilinear resize to the graph's 299x299, then scale to [-1, 1].
        x = F.interpolate(x_nchw, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1  # (B, 3, 299, 299)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (B, 64, 147, 147)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (B, 192, 71, 71)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 192, 35, 35)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # (B, 288, 35, 35)
        x = self.Mixed_6a(x)  # (B, 768, 17, 17)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # (B, 768, 17, 17)
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # (B, 2048, 8, 8)
        return x.mean(dim=(2, 3))  # (B, 2048)

    @torch.no_grad()
    def features(self, images_bhwc: torch.Tensor | np.ndarray, *, data_range: float | None = None,
                 batch_size: int = 32) -> torch.Tensor:
        """Pool3 features of images (B, H, W, 3) in the hma pixel convention -> float (B, 2048)."""
        param = next(self.parameters())
        x = to_unit_nchw(images_bhwc, data_range=data_range)  # (B, 3, H, W)
        out = [self(chunk.to(device=param.device, dtype=param.dtype)) for chunk in x.split(batch_size)]
        return torch.cat(out)  # (B, 2048)


def load_fid_inception(
    weights: str | os.PathLike | None = None, *, device: torch.device | str | None = None
) -> FIDInceptionV3 | Unavailable:
    """The FID InceptionV3 from its standard file, or :class:`Unavailable` when none is named.

    Raises CheckpointError when the named file is missing or is not the expected one.
    """
    return load_feature_net(FIDInceptionV3(), weights, env_var=FID_ENV, metric="FID", file_name=FID_FILE,
                            what="FID Inception weight file", device=device, ignore_prefixes=("fc.",),
                            found=[hub_checkpoint(FID_HUB_FILE)])
