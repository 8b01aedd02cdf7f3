"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

Why FSQ rather than the lookup-free quantizer (LFQ) of MAGVIT-2 that the HMA reference
uses: FSQ has no codebook to collapse and needs no commitment, entropy or diversity
losses; each latent channel is bounded and rounded to one of ``L_i`` levels, and the
token id is the mixed-radix number of those digits. The vocabulary is prod(L_i), and the
FSQ paper's level tables keep every digit in use without auxiliary terms.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hma.errors import ConfigError

# Level tables recommended by the FSQ paper (Table 1) for each target vocabulary size.
LEVELS_FOR_BITS: dict[int, tuple[int, ...]] = {
    8: (8, 6, 5),
    10: (8, 5, 5, 5),
    12: (7, 5, 5, 5, 5),
    14: (8, 8, 8, 6, 5),
    16: (8, 8, 8, 5, 5, 5),
}


def levels_for_vocab(vocab_size: int) -> tuple[int, ...]:
    """The FSQ paper's levels whose product is closest to ``vocab_size`` (a power of two)."""
    bits = round(math.log2(max(vocab_size, 2)))
    if bits not in LEVELS_FOR_BITS:
        raise ConfigError(f"vocabulary size {vocab_size} is not supported, expected about 2^{min(LEVELS_FOR_BITS)} to 2^{max(LEVELS_FOR_BITS)} (or give explicit FSQ levels)")
    return LEVELS_FOR_BITS[bits]


class FSQ(nn.Module):
    """Quantizes (B, D, h, w) latents, D = len(levels), to codes in [-1, 1] and integer ids."""

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        if not levels or any(int(l) < 2 for l in levels):
            raise ConfigError(f"FSQ levels {list(levels)} are invalid, expected a non-empty list of integers >= 2")
        self.levels = tuple(int(l) for l in levels)
        lv = torch.tensor(self.levels, dtype=torch.float64)
        basis = torch.cumprod(torch.tensor((1,) + self.levels[:-1], dtype=torch.float64), 0)
        # Buffers are non-persistent: they follow from `levels`, which lives in config.json.
        self.register_buffer("_levels", lv.float().view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_basis", basis.long().view(1, -1, 1, 1), persistent=False)

    @property
    def vocab_size(self) -> int:
        return math.prod(self.levels)

    @property
    def dim(self) -> int:
        return len(self.levels)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash each channel to (-(L-1)/2, (L-1)/2), shifted for even L so rounding gives L values."""
        eps = 1e-3
        half_l = (self._levels - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, D, h, w) -> (codes (B, D, h, w) in [-1, 1] with straight-through gradients, ids (B, h, w))."""
        bounded = self._bound(z)  # (B, D, h, w)
        rounded = bounded + (bounded.round() - bounded).detach()  # straight-through estimator
        digits = rounded.detach().round().long() + (self._levels.long() // 2)  # (B, D, h, w) in [0, L)
        ids = (digits * self._basis).sum(1)  # (B, h, w)
        return rounded / (self._levels // 2), ids

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> codes (B, D, h, w) in [-1, 1]."""
        digits = (ids.long().unsqueeze(1) // self._basis) % self._levels.long()  # (B, D, h, w)
        half = self._levels // 2
        return (digits - half.long()).to(self._levels.dtype) / half
