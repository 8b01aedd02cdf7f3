"""LPIPS with the AlexNet backbone (Zhang et al. 2018, "The Unreasonable Effectiveness of
Deep Features as a Perceptual Metric"), version 0.1 as used in the paper's evaluation.

Two standard files make it up, read as they are published:
- the ImageNet AlexNet of torchvision, ``alexnet-owt-7be5be79.pth`` (keys ``features.{i}.*``;
  the ``classifier.*`` head is ignored), given by ``alexnet_weights`` or ``$HMA_ALEXNET_WEIGHTS``,
  else found in the torch hub cache where torchvision keeps it;
- the LPIPS linear calibration of the ``lpips`` package, ``weights/v0.1/alex.pth`` (keys
  ``lin{0..4}.model.1.weight``), given by ``lin_weights`` or ``$HMA_LPIPS_WEIGHTS``, else found
  inside an installed ``lpips`` package, which ships it.
Both may also be .safetensors files with the same keys.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from hma.eval.nets._common import (Unavailable, hub_checkpoint, load_checked, package_file, read_state_dict,
                                   resolve_weights, to_unit_nchw)
from hma.errors import DataError

LPIPS_ENV = "HMA_LPIPS_WEIGHTS"
ALEXNET_ENV = "HMA_ALEXNET_WEIGHTS"
LPIPS_FILE = "the LPIPS v0.1 AlexNet linear-layer file (lpips package weights/v0.1/alex.pth)"
ALEXNET_FILE = "torchvision's ImageNet AlexNet weights (alexnet-owt-7be5be79.pth)"
LPIPS_PACKAGE_FILE = "weights/v0.1/alex.pth"  # inside the installed lpips package, which ships it
ALEXNET_HUB_FILE = "alexnet-owt-7be5be79.pth"  # in the torch hub cache, where torchvision downloads it

# Indices into torchvision's AlexNet `features` after which LPIPS taps (relu1..relu5).
_TAPS = (1, 4, 7, 9, 11)
_TAP_CHANNELS = (64, 192, 384, 256, 256)


def _alexnet_features() -> nn.Sequential:
    """torchvision's AlexNet `features` up to relu5, numbered as in its state dict."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # 0
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10
        nn.ReLU(inplace=True),
    )


class _LinearCalibration(nn.Module):
    """One LPIPS `lin{i}`: dropout then a bias-free 1x1 conv; `model.1` is the conv in the file."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """Perceptual distance between two batches of images; lower = more similar."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _alexnet_features()
        self.lin0, self.lin1, self.lin2, self.lin3, self.lin4 = (_LinearCalibration(c) for c in _TAP_CHANNELS)
        # LPIPS' ScalingLayer: inputs in [-1, 1] are shifted/scaled to ImageNet statistics.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)

    def _taps(self, x_nchw: torch.Tensor) -> list[torch.Tensor]:
        x = (x_nchw * 2 - 1 - self.shift) / self.scale  # (B, 3, H, W)
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                # Unit-normalize along channels (eps as in LPIPS) so every layer weighs alike.
                taps.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))  # (B, C_i, h_i, w_i)
        return taps

    def forward(self, a_nchw: torch.Tensor, b_nchw: torch.Tensor) -> torch.Tensor:
        """a, b: float (B, 3, H, W) in [0, 1] -> distances (B,)."""
        lins = (self.lin0, self.lin1, self.lin2, self.lin3, self.lin4)
        per_layer = [lin((fa - fb).pow(2)).mean(dim=(1, 2, 3))  # (B,): spatial average of the weighted difference
                     for lin, fa, fb in zip(lins, self._taps(a_nchw), self._taps(b_nchw))]
        return torch.stack(per_layer).sum(dim=0)  # (B,)

    @torch.no_grad()
    def distance(
        self, a_bhwc: torch.Tensor | np.ndarray, b_bhwc: torch.Tensor | np.ndarray, *, data_range: float | None = None
    ) -> torch.Tensor:
        """LPIPS between images (B, H, W, 3) in the hma pixel convention -> (B,)."""
        param = next(self.parameters())
        a = to_unit_nchw(a_bhwc, data_range=data_range).to(device=param.device, dtype=param.dtype)
        b = to_unit_nchw(b_bhwc, data_range=data_range).to(device=param.device, dtype=param.dtype)
        if a.shape != b.shape:
            raise DataError(f"LPIPS needs images of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        return self(a, b)


def load_lpips(
    lin_weights: str | os.PathLike | None = None,
    alexnet_weights: str | os.PathLike | None = None,
    *,
    device: torch.device | str | None = None,
) -> LPIPS | Unavailable:
    """The LPIPS(alex, v0.1) network from its two standard files, or :class:`Unavailable`.

    Raises CheckpointError when a named file exists but is not the expected one.
    """
    lin_path = resolve_weights(lin_weights, LPIPS_ENV, found=[package_file("lpips", LPIPS_PACKAGE_FILE)])
    if lin_path is None:
        return Unavailable("LPIPS", LPIPS_ENV, LPIPS_FILE)
    alex_path = resolve_weights(alexnet_weights, ALEXNET_ENV, found=[hub_checkpoint(ALEXNET_HUB_FILE)])
    if alex_path is None:
        return Unavailable("LPIPS", ALEXNET_ENV, ALEXNET_FILE)
    net = LPIPS()
    # Wrapping each part in a ModuleDict reproduces the file's key names (features.0.weight, ...).
    alex = nn.ModuleDict({"features": net.features})
    load_checked(alex, read_state_dict(alex_path, "AlexNet weight file"), alex_path, "AlexNet weight file",
                 ignore_prefixes=("classifier.",))
    lin_state = read_state_dict(lin_path, "LPIPS weight file")
    lins = nn.ModuleDict({f"lin{i}": getattr(net, f"lin{i}") for i in range(5)})
    load_checked(lins, lin_state, lin_path, "LPIPS weight file")
    return net.to(device).eval().requires_grad_(False)

