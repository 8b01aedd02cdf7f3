"""Optimizer, learning-rate schedule and EMA for world-model training."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def build_optimizer(model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW; matrices decay, biases/norms/embedding-like vectors do not (they are not weights
    that over-fit by growing, and decaying them only fights the normalization)."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.dim() >= 2]
    no_decay = [p for n, p in trainable if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


class WarmupCosine:
    """LR multiplier: linear warmup to 1, then cosine decay to ``floor`` at ``total_steps``.

    A small callable object (not a closure) so ``total_steps`` can be fixed after a timed
    run has measured its speed; it is saved with the training state.
    """

    def __init__(self, warmup_steps: int, total_steps: int, floor: float = 0.1) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.floor = floor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


class Ema:
    """Exponential moving average of the trainable weights (kept in fp32 beside the model)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow: dict[str, Tensor] = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v.float(), 1 - self.decay)
            else:
                self.shadow[k].copy_(v)
