"""Inception-I3D (Carreira & Zisserman 2017, Kinetics-400) as used for FVD.

Reads the standard ``i3d_pretrained_400.pt`` of the common PyTorch FVD code (VideoGPT; the
"videogpt" method of common_metrics_on_video_quality, which the HMA reference evaluation
vendors) from ``weights`` or ``$HMA_FVD_I3D_WEIGHTS``; a .safetensors file with the same keys
also works. Keys: ``Conv3d_1a_7x7.conv3d.weight``, ``Conv3d_1a_7x7.bn.*``,
``Mixed_3b.b0.conv3d.weight``, ... ``logits.conv3d.{weight,bias}``.

Two feature layers are offered (:class:`I3DLayer`):
- ``LOGITS`` (default): the 400 Kinetics logits averaged over time, which is what FVD uses
  (Unterthiner et al. 2018, VideoGPT, StyleGAN-V) and so what published FVDs are comparable to;
- ``POOL``: the 1024-d average-pooled Mixed_5c features that feed the final classifier.
"""

from __future__ import annotations

import enum
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hma.eval.nets._common import Unavailable, as_float_pixels, load_feature_net
from hma.errors import DataError

I3D_ENV = "HMA_FVD_I3D_WEIGHTS"
I3D_FILE = "the Kinetics-400 Inception-I3D weights used by FVD code (i3d_pretrained_400.pt)"
I3D_RESOLUTION = 224
# Three stride-2 temporal stages leave ceil(T/8) steps and the final 2-step average pool needs 2.
I3D_MIN_FRAMES = 9


class I3DLayer(enum.Enum):
    LOGITS = 400
    POOL = 1024

    @property
    def dim(self) -> int:
        return self.value


def _same_pad(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """TensorFlow 'SAME' padding for a (B, C, T, H, W) input, extra pad at the back."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):  # F.pad wants W first
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class _Unit3D(nn.Module):
    """Conv3d with 'SAME' padding, optional BatchNorm and ReLU: keys ``conv3d.*``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), *, classifier: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.classifier = kernel, stride, classifier
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, bias=classifier)
        if not classifier:
            # eps/momentum as in the FVD code that ships this file (VideoGPT's pytorch_i3d).
            self.bn = nn.BatchNorm3d(cout, eps=1e-5, momentum=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        return x if self.classifier else F.relu(self.bn(x))


def _max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    # Zero padding is harmless here: every input follows a ReLU.
    return F.max_pool3d(_same_pad(x, kernel, stride), kernel, stride)


class _Mixed(nn.Module):
    """Inception module: 1x1 | 1x1->3x3 | 1x1->3x3 | maxpool->1x1, concatenated."""

    def __init__(self, cin: int, c: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = _Unit3D(cin, c[0])
        self.b1a = _Unit3D(cin, c[1])
        self.b1b = _Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a = _Unit3D(cin, c[3])
        self.b2b = _Unit3D(c[3], c[4], (3, 3, 3))
        self.b3b = _Unit3D(cin, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = _max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(pooled)], dim=1)


class InceptionI3D(nn.Module):
    """RGB Inception-I3D with 400 Kinetics classes."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = _Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = _Unit3D(64, 64)
        self.Conv3d_2c_3x3 = _Unit3D(64, 192, (3, 3, 3))
        self.Mixed_3b = _Mixed(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = _Mixed(256, (128, 128, 192, 32, 96, 64))
        self.Mixed_4b = _Mixed(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = _Mixed(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = _Mixed(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = _Mixed(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = _Mixed(528, (256, 160, 320, 32, 128, 128))
        self.Mixed_5b = _Mixed(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = _Mixed(832, (384, 192, 384, 48, 128, 128))
        self.logits = _Unit3D(1024, num_classes, classifier=True)

    def forward(self, x_bcthw: torch.Tensor, layer: I3DLayer = I3DLayer.LOGITS) -> torch.Tensor:
        """x: float (B, 3, T, 224, 224) in [-1, 1] -> features (B, layer.dim)."""
        x = self.Conv3d_1a_7x7(x_bcthw)  # (B, 64, T/2, 112, 112)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))  # (B, 64, T/2, 56, 56)
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))  # (B, 192, T/2, 56, 56)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))  # (B, 192, T/2, 28, 28)
        x = self.Mixed_3c(self.Mixed_3b(x))  # (B, 480, T/2, 28, 28)
        x = _max_pool_same(x, (3, 3, 3), (2, 2, 2))  # (B, 480, T/4, 14, 14)
        for block in (self.Mixed_4b, self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f):
            x = block(x)  # (B, 832, T/4, 14, 14) after Mixed_4f
        x = _max_pool_same(x, (2, 2, 2), (2, 2, 2))  # (B, 832, T/8, 7, 7)
        x = self.Mixed_5c(self.Mixed_5b(x))  # (B, 1024, T/8, 7, 7)
        x = F.avg_pool3d(x, kernel_size=(2, 7, 7), stride=1)  # (B, 1024, T/8 - 1, 1, 1)
        if layer is I3DLayer.LOGITS:
            x = self.logits(x)  # (B, 400, T/8 - 1, 1, 1)
        return x.mean(dim=(2, 3, 4))  # (B, layer.dim)

    @torch.no_grad()
    def features(self, videos_bthwc: torch.Tensor | np.ndarray, *, layer: I3DLayer = I3DLayer.LOGITS,
                 data_range: float | None = None, batch_size: int = 8) -> torch.Tensor:
        """Features of videos (B, T, H, W, 3) in the hma pixel convention -> float (B, layer.dim)."""
        v, rng = as_float_pixels(videos_bthwc, data_range=data_range)
        if v.ndim != 5 or v.shape[-1] != 3:
            raise DataError(f"expected videos of shape (B, T, H, W, 3), got {tuple(v.shape)}")
        if v.shape[1] < I3D_MIN_FRAMES:
            raise DataError(f"FVD's I3D needs videos of at least {I3D_MIN_FRAMES} frames, got {v.shape[1]}")
        param = next(self.parameters())
        out = [self(_preprocess(chunk / rng).to(device=param.device, dtype=param.dtype), layer)
               for chunk in v.split(batch_size)]
        return torch.cat(out)  # (B, layer.dim)


def _preprocess(videos_bthwc: torch.Tensor) -> torch.Tensor:
    """[0, 1] videos -> (B, 3, T, 224, 224) in [-1, 1]: shorter side resized to 224, centre crop."""
    b, t, h, w, _ = videos_bthwc.shape
    x = rearrange(videos_bthwc, "b t h w c -> (b t) c h w")
    # The shorter side is set exactly (ceil of a float product could overshoot to 225).
    if h < w:
        size = (I3D_RESOLUTION, math.ceil(w * I3D_RESOLUTION / h))
    else:
        size = (math.ceil(h * I3D_RESOLUTION / w), I3D_RESOLUTION)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # (B*T, 3, H', W')
    top, left = (size[0] - I3D_RESOLUTION) // 2, (size[1] - I3D_RESOLUTION) // 2
    x = x[:, :, top:top + I3D_RESOLUTION, left:left + I3D_RESOLUTION]  # (B*T, 3, 224, 224)
    return rearrange(x * 2 - 1, "(b t) c h w -> b c t h w", b=b)


def load_i3d(
    weights: str | os.PathLike | None = None, *, device: torch.device | str | None = None
) -> InceptionI3D | Unavailable:
    """The FVD I3D from its standard file, or :class:`Unavailable` when none is named.

    Raises CheckpointError when the named file is missing or is not the expected one.
    """
    return load_feature_net(InceptionI3D(), weights, env_var=I3D_ENV, metric="FVD", file_name=I3D_FILE,
                            what="FVD I3D weight file", device=device)
