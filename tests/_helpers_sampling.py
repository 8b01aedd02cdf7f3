"""Tiny random world models for the sampling tests (no conftest: see tests/README policy)."""

from __future__ import annotations


import torch

from hma.config import EmbodimentSpec, preset
from hma.model import WorldModel

ACTION_DIM = 3


def tiny_model(kind: str = "discrete", *, num_frames: int = 4, num_blocks: int = 2, width: int = 32,
               grid: tuple[int, int] = (4, 4), seed: int = 0) -> WorldModel:
    """A small random model whose zero-initialised adaLN/pos weights are perturbed, so actions,
    positions and every block change the output (a freshly initialised one ignores some)."""
    spec = EmbodimentSpec(name="arm", action_dim=ACTION_DIM, chunk=1, mean=[0.0] * ACTION_DIM, std=[1.0] * ACTION_DIM)
    config = preset("tiny", kind=kind, embodiments={"arm": spec}, num_frames=num_frames, num_blocks=num_blocks,
                    width=width, grid=grid, vocab_size=64, diffusion_width=32, diffusion_blocks=1)
    torch.manual_seed(seed)
    model = WorldModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def context_and_actions(model: WorldModel, *, batch: int, context: int, new: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random context frames (B, T0, ...) and the T0 - 1 + new actions that drive a rollout."""
    c = model.config
    g = torch.Generator().manual_seed(seed)
    if c.kind == "discrete":
        frames = torch.randint(0, c.vocab_size, (batch, context, *c.grid), generator=g)
    else:
        frames = torch.randn(batch, context, c.latent_channels, *c.grid, generator=g)
    actions = torch.randn(batch, context - 1 + new, ACTION_DIM, generator=g)
    return frames, actions


