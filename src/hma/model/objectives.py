"""Training masks for the four problem settings (paper sec. 3.3) and the MaskGIT schedule.

One model serves every setting; only the masks differ:

=========  ======================================  ==========================
setting    frame tokens of frames 1..T-1           actions
=========  ======================================  ==========================
video      cosine-scheduled fraction masked        all hidden, no action loss
forward    cosine-scheduled fraction masked        all visible, no action loss
full       cosine-scheduled fraction masked        cosine fraction hidden and predicted
policy     all visible                             all hidden and predicted
=========  ======================================  ==========================

Frame 0 is always context. ``mixed`` draws a setting per sample, so one batch mixes all four.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from hma.config import Setting

_CONCRETE = [Setting.VIDEO, Setting.FORWARD, Setting.FULL, Setting.POLICY]


def cosine_mask_ratio(u: Tensor) -> Tensor:
    """MaskGIT's schedule: u ~ U(0,1) -> fraction masked cos(pi/2 u), dense near 1 (hard)."""
    return torch.cos(0.5 * math.pi * u)


@dataclass
class Masks:
    tokens: Tensor  # (B,T,S) bool, True = masked (to predict)
    actions: Tensor  # (B,T) bool, True = hidden from the model
    action_loss: Tensor  # (B,T) bool, True = the action prediction at t is scored


def sample_masks(batch_size: int, num_frames: int, tokens_per_frame: int, setting: Setting, *,
                 generator: torch.Generator | None, device: torch.device) -> Masks:
    """Masks for one batch; ``generator`` makes them reproducible (resume, DDP ranks)."""
    b, t, s = batch_size, num_frames, tokens_per_frame
    if setting == Setting.MIXED:
        codes = torch.randint(0, len(_CONCRETE), (b,), generator=generator, device=device)  # (B,)
    else:
        codes = torch.full((b,), _CONCRETE.index(setting), device=device)
    # Forward dynamics is the "nothing hidden" case of the expressions below.
    is_video, _, is_full, is_policy = (codes == i for i in range(len(_CONCRETE)))

    # Tokens: an exact cosine-scheduled count per future frame, placed at random.
    ratio = cosine_mask_ratio(torch.rand((b, t), generator=generator, device=device))  # (B,T)
    count = (ratio * s).ceil().clamp(1, s)  # (B,T)
    ranks = torch.rand((b, t, s), generator=generator, device=device).argsort(-1).argsort(-1)  # (B,T,S)
    tokens = ranks < count[..., None]  # (B,T,S)
    tokens[:, 0] = False
    tokens &= ~is_policy[:, None, None]

    # Actions: full dynamics hides a cosine-scheduled fraction of them.
    hide_ratio = cosine_mask_ratio(torch.rand((b, 1), generator=generator, device=device))  # (B,1)
    partly = torch.rand((b, t), generator=generator, device=device) < hide_ratio  # (B,T)
    hidden = torch.where(is_full[:, None], partly, (is_video | is_policy)[:, None].expand(b, t))  # (B,T)
    scored = hidden & (is_full | is_policy)[:, None]  # (B,T)
    return Masks(tokens=tokens, actions=hidden, action_loss=scored)


def masked_cross_entropy(model, tokens: Tensor, actions: Tensor, *, embodiment: str, setting: Setting,
                         generator: torch.Generator) -> tuple[float, int, Tensor]:
    """Held-out scoring of a discrete world model on one batch, the one both training and
    evaluation report: tokens (B,T,h,w) masked as in training for ``setting`` (drawn from
    ``generator``), the model's cross-entropy on them. Returns (summed cross-entropy in nats,
    masked-token count, the mask (B,T,S))."""
    b, t = tokens.shape[:2]
    c = model.config
    masks = sample_masks(b, t, c.tokens_per_frame, setting, generator=generator, device=tokens.device)
    token_mask = masks.tokens.reshape(b, t, *c.grid)
    out = model(tokens, actions, embodiment=embodiment, token_mask=token_mask, action_mask=masks.actions)
    n = int(masks.tokens.sum())
    return float(model.token_cross_entropy(out.logits, tokens, masks.tokens)) * n, n, masks.tokens
