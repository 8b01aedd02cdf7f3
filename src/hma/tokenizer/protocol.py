"""What every image tokenizer offers the rest of hma (docs/dev/contracts.md, "Tokenizers").

The world model, the samplers and ``hma tokenize`` only see this protocol, so a tokenizer
trained here and an external one (a diffusers ``AutoencoderKL``) are interchangeable.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from einops import rearrange

from hma.errors import DataError

TokenizerKind = Literal["discrete", "continuous"]


@runtime_checkable
class Tokenizer(Protocol):
    """Frames to tokens (discrete ids or scaled continuous latents) and back, batched."""

    kind: TokenizerKind
    name: str
    fingerprint: str  # sha256 of the weights file: shards made with other weights are stale
    identity: str  # short hex hash of config + weights (content_identity): names the tokenizer's token shards

    @property
    def image_size(self) -> tuple[int, int]: ...

    @property
    def grid(self) -> tuple[int, int]: ...

    def encode(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> LongTensor (B, h, w) or FloatTensor (B, C, h, w), already scaled."""
        ...

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens or scaled latents -> uint8 (B, H, W, 3)."""
        ...


def content_identity(config: dict, weights_sha256: str) -> str:
    """12 hex digits of the sha256 of a tokenizer's config (canonical JSON) and its weights'
    sha256: two tokenizers share it only when both match, whatever their folders are called."""
    doc = json.dumps({"config": config, "weights": weights_sha256}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()[:12]


def frames_to_unit(frames: torch.Tensor | np.ndarray, *, image_size: tuple[int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (B, H, W, 3) frames -> float (B, 3, H, W) in [-1, 1] on ``device``; checks the shape."""
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = np.array(frames)  # memmaps opened read-only: torch wants a writable buffer
    frames = torch.as_tensor(frames)
    h, w = image_size
    if frames.dtype != torch.uint8 or frames.ndim != 4 or tuple(frames.shape[1:]) != (h, w, 3):
        raise DataError(f"frames are {frames.dtype}{list(frames.shape)}, expected uint8[B, {h}, {w}, 3]")
    x = rearrange(frames.to(device), "b h w c -> b c h w")  # (B, 3, H, W)
    return x.to(dtype) / 127.5 - 1.0


def unit_to_frames(x: torch.Tensor) -> torch.Tensor:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3), rounded and clipped."""
    x = ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return rearrange(x, "b c h w -> b h w c")  # (B, H, W, 3)
