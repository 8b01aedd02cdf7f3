"""Convolutional autoencoders behind hma's tokenizers.

Layout (8x downsampling, the default): a stride-2 4x4 convolution per stage
(3 -> 32 -> 64 -> 128 channels, 64x64 -> 8x8), then residual blocks at the token
resolution; the decoder mirrors it with transposed convolutions. Residual blocks only at
the token resolution keep the cost where the tensors are small: measured on this
project's 2-core CPU, adding blocks at 32x32 halved encode+decode throughput for little
reconstruction gain. The discrete variant ends in FSQ, the continuous one in a diagonal
Gaussian (KL-regularized, as in latent diffusion's autoencoders).

The patch encoder (``encoder="patch"``) sees one token's patch of pixels per token:
non-overlapping 2x2 stride-2 convolutions, then per-token residual layers with a norm over
channels. Its tokens change only where their pixels change, so the tokens of a static
background stay put while the robot moves; with the convolutional encoder a moving arm
flips tokens across the frame (the "static flips" of ``hma tokenizer eval``), which a world
model must then learn to predict as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hma.config import TokenKind
from hma.tokenizer.config import TokenizerConfig
from hma.tokenizer.fsq import FSQ


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4), channels)


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)  # (B, C, h, w)


class Encoder(nn.Module):
    def __init__(self, channels: tuple[int, ...], num_res_blocks: int, out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 4, stride=2, padding=1)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.SiLU(), nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)]
        layers += [ResBlock(channels[-1]) for _ in range(num_res_blocks)]
        layers += [_norm(channels[-1]), nn.SiLU(), nn.Conv2d(channels[-1], out_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 3, H, W) -> (B, out_channels, h, w)


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each position: a per-token norm (GroupNorm pools over the frame)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, C, h, w)


class TokenResBlock(nn.Module):
    """A residual MLP applied to each token position alone."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ChannelNorm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 1),
                                  ChannelNorm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)  # (B, C, h, w)


class PatchEncoder(nn.Module):
    def __init__(self, channels: tuple[int, ...], num_res_blocks: int, out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 2, stride=2)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.SiLU(), nn.Conv2d(c_in, c_out, 2, stride=2)]
        layers += [TokenResBlock(channels[-1]) for _ in range(num_res_blocks)]
        layers += [ChannelNorm(channels[-1]), nn.SiLU(), nn.Conv2d(channels[-1], out_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 3, H, W) -> (B, out_channels, h, w), each token from its own patch


class Decoder(nn.Module):
    def __init__(self, channels: tuple[int, ...], num_res_blocks: int, in_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[-1], 3, padding=1)]
        layers += [ResBlock(channels[-1]) for _ in range(num_res_blocks)]
        widths = channels[::-1] + (3,)
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.SiLU(), nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)  # (B, in_channels, h, w) -> (B, 3, H, W)


@dataclass
class AutoencoderOutput:
    recon: torch.Tensor  # (B, 3, H, W) in about [-1, 1]
    aux_loss: torch.Tensor  # scalar: the KL term (continuous) or 0 (discrete)
    ids: torch.Tensor | None = None  # (B, h, w) token ids (discrete)


class ConvAutoencoder(nn.Module):
    """Encoder -> FSQ or diagonal Gaussian -> decoder, working on images in [-1, 1]."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        if config.kind == TokenKind.DISCRETE:
            self.quantizer: FSQ | None = FSQ(config.fsq_levels)
            bottleneck = self.quantizer.dim
            enc_out = bottleneck
        else:
            self.quantizer = None
            bottleneck = config.latent_channels
            enc_out = 2 * bottleneck  # mean and log-variance
        encoder = PatchEncoder if config.encoder == "patch" else Encoder
        self.encoder = encoder(config.channels, config.num_res_blocks, enc_out)
        self.decoder = Decoder(config.channels, config.num_res_blocks, bottleneck)

    def encode_ids(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) -> token ids (B, h, w)."""
        _, ids = self.quantizer(self.encoder(x))
        return ids

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> images (B, 3, H, W)."""
        return self.decoder(self.quantizer.ids_to_codes(ids))

    def encode_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, H, W) -> (mean, logvar), each (B, C, h, w), unscaled."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> AutoencoderOutput:
        if self.quantizer is not None:
            codes, ids = self.quantizer(self.encoder(x))  # (B, D, h, w), (B, h, w)
            return AutoencoderOutput(self.decoder(codes), x.new_zeros(()), ids)
        mean, logvar = self.encode_moments(x)  # (B, C, h, w) each
        std = torch.exp(0.5 * logvar)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + std * noise  # reparameterized sample, (B, C, h, w)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return AutoencoderOutput(self.decoder(z), kl)


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, config: TokenizerConfig, *,
                        pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel loss (L1, L2 or both) plus an optional L1 on image gradients, which sharpens edges.

    ``pixel_weight`` (B, 1, H, W) weighs the pixel loss (normalized to a weighted mean).
    """
    loss = recon.new_zeros(())
    w = None if pixel_weight is None else pixel_weight / pixel_weight.mean()
    if "l1" in config.recon_loss:
        loss = loss + (F.l1_loss(recon, target) if w is None else ((recon - target).abs() * w).mean())
    if "l2" in config.recon_loss:
        loss = loss + (F.mse_loss(recon, target) if w is None else ((recon - target).pow(2) * w).mean())
    if config.grad_loss_weight > 0:
        def grads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]

        (ry, rx), (ty, tx) = grads(recon), grads(target)
        loss = loss + config.grad_loss_weight * (F.l1_loss(ry, ty) + F.l1_loss(rx, tx))
    return loss
