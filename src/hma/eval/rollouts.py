"""The two ways an evaluation generates a clip from its true start: an autoregressive rollout
under the clip's actions, and teacher-forced one-frame predictions from the true past."""

from __future__ import annotations

import time

import torch
from torch import Tensor


@torch.inference_mode()
def generate_autoregressive(gen, tokens: Tensor, actions: Tensor, context: int, *, seed: int) -> tuple[Tensor, float]:
    """Roll out from ``context`` true frames with ``actions`` (B, L, k*A): frames (B, L - context, ...), seconds."""
    generator = torch.Generator(device=tokens.device).manual_seed(seed)
    gen.reset(tokens[:, :context], actions[:, : context - 1])
    frames, started = [], time.perf_counter()
    for t in range(context, tokens.shape[1]):
        frames.append(gen.step(actions[:, t - 1], generator))  # frame t follows the action taken at t - 1
    return torch.stack(frames, dim=1), time.perf_counter() - started


@torch.inference_mode()
def generate_teacher_forced(gen, tokens: Tensor, actions: Tensor, context: int, *, window: int, seed: int) -> Tensor:
    """Predict each frame t >= ``context`` from the true frames before it (at most ``window - 1``)."""
    generator = torch.Generator(device=tokens.device).manual_seed(seed)
    frames = []
    for t in range(context, tokens.shape[1]):
        lo = max(0, t - (window - 1))
        gen.reset(tokens[:, lo:t], actions[:, lo : t - 1])
        frames.append(gen.step(actions[:, t - 1], generator))
    return torch.stack(frames, dim=1)
