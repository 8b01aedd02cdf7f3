"""Configuration of the tokenizers trained by hma; saved as ``config.json`` beside the weights."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hma.config import TokenKind
from hma.errors import ConfigError
from hma.tokenizer.fsq import levels_for_vocab
from hma.tokenizer.protocol import TokenizerKind

CONFIG_FORMAT = "hma-tokenizer"
CONFIG_VERSION = 1
RECON_LOSSES = ("l1", "l2", "l1+l2")
# "conv": overlapping 4x4 convolutions, residual blocks of 3x3 convolutions and GroupNorm at
# the token grid, so a token depends on most of the frame. "patch": non-overlapping 2x2
# convolutions and per-token layers, so a token depends on its own patch of pixels only.
ENCODERS = ("conv", "patch")


def default_channels(downsample: int) -> tuple[int, ...]:
    """One stride-2 stage per factor of two, widths 32-64-128 ending at the token grid.

    Widths are kept small so encode+decode runs at several hundred frames/s on a CPU.
    """
    stages = int(math.log2(downsample))
    return tuple(min(128, 32 * 2 ** max(0, i - (stages - 3))) for i in range(stages))


@dataclass
class TokenizerConfig:
    """Architecture and training objective of a :class:`~hma.tokenizer.modeling.ConvAutoencoder`."""

    kind: TokenizerKind = "discrete"
    name: str = "tokenizer"
    image_size: tuple[int, int] = (64, 64)
    downsample: int = 8  # 64x64 frames -> 8x8 tokens; 4 gives 16x16 grids
    channels: tuple[int, ...] = ()  # one width per stride-2 stage; empty = default_channels(downsample)
    num_res_blocks: int = 2  # residual blocks at the token resolution, in encoder and decoder
    encoder: str = "conv"  # one of ENCODERS; the decoder is convolutional either way
    fsq_levels: tuple[int, ...] = ()  # discrete only; empty = FSQ paper levels for vocab_size
    vocab_size: int = 4096  # discrete only; the exact size is prod(fsq_levels)
    latent_channels: int = 8  # continuous only
    latent_scale: float = 1.0  # continuous only: 1 / std of the latents, measured after training
    kl_weight: float = 1e-5  # continuous only: keeps latents near a unit Gaussian without blurring
    recon_loss: str = "l1+l2"
    grad_loss_weight: float = 0.0  # L1 between image gradients (edges); off by default
    # Loss weight of the pixels that differ from their dataset's background (the per-pixel
    # median over its training frames): the robot and what it moves. A plain mean is
    # dominated by the static background, and thin moving parts are the first a small
    # tokenizer gives up.
    foreground_weight: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.kind not in {k.value for k in TokenKind}:
            raise ConfigError(f"tokenizer kind {self.kind!r} is unknown, expected 'discrete' or 'continuous'")
        if self.downsample < 2 or self.downsample & (self.downsample - 1):
            raise ConfigError(f"downsample {self.downsample} is invalid, expected a power of two >= 2")
        if any(s % self.downsample for s in self.image_size):
            raise ConfigError(f"image size {list(self.image_size)} is not divisible by downsample {self.downsample}")
        self.channels = tuple(int(c) for c in self.channels) or default_channels(self.downsample)
        if len(self.channels) != int(math.log2(self.downsample)) or any(c % 8 for c in self.channels):
            raise ConfigError(f"channels {list(self.channels)} are invalid for downsample {self.downsample}, expected {int(math.log2(self.downsample))} multiples of 8")
        if self.kind == TokenKind.DISCRETE:
            self.fsq_levels = tuple(int(l) for l in self.fsq_levels) or levels_for_vocab(self.vocab_size)
            self.vocab_size = math.prod(self.fsq_levels)
        if self.latent_channels < 1:
            raise ConfigError(f"latent_channels {self.latent_channels} is invalid, expected >= 1")
        if self.foreground_weight < 1:
            raise ConfigError(f"foreground weight {self.foreground_weight} is invalid, expected >= 1 (1 = plain mean)")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"encoder {self.encoder!r} is unknown, expected one of {', '.join(ENCODERS)}")
        if self.recon_loss not in RECON_LOSSES:
            raise ConfigError(f"reconstruction loss {self.recon_loss!r} is unknown, expected one of {', '.join(RECON_LOSSES)}")

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.downsample, self.image_size[1] // self.downsample

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("image_size", "channels", "fsq_levels"):
            d[k] = list(d[k])
        if self.kind == TokenKind.DISCRETE:
            for k in ("latent_channels", "latent_scale", "kl_weight"):
                d.pop(k)
        else:
            for k in ("fsq_levels", "vocab_size"):
                d.pop(k)
        return {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, **d, "grid": list(self.grid)}

    @classmethod
    def from_json(cls, d: dict[str, Any], *, where: str = "config.json") -> "TokenizerConfig":
        if d.get("format") != CONFIG_FORMAT or d.get("version") != CONFIG_VERSION:
            raise ConfigError(f"{where} has format {d.get('format')!r} version {d.get('version')!r}, expected {CONFIG_FORMAT!r} version {CONFIG_VERSION}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known - {"format", "version", "grid"})
        if unknown:
            raise ConfigError(f"{where} has unknown field(s) {', '.join(unknown)}")
        return cls(**{k: v for k, v in d.items() if k in known})
