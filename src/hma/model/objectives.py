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
from torch import Tensor, nn

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
                 generator: torch.Generator | None, device: torch.device, visible_past: float = 0.0) -> Masks:
    """Masks for one batch; ``generator`` makes them reproducible (resume, DDP ranks).

    ``visible_past``: the share of samples that see the past as generation does. Such a sample
    draws a frame k in 1..T-1 and keeps every frame before it fully visible, so frame k is
    predicted from a clean past instead of a partly masked one.
    """
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
    if visible_past > 0:
        chosen = torch.rand((b,), generator=generator, device=device) < visible_past  # (B,)
        first = torch.randint(1, t, (b,), generator=generator, device=device)  # (B,) the first masked frame
        before = torch.arange(t, device=device)[None, :] < first[:, None]  # (B,T)
        tokens &= ~(chosen[:, None] & before)[..., None]

    # Actions: full dynamics hides a cosine-scheduled fraction of them.
    hide_ratio = cosine_mask_ratio(torch.rand((b, 1), generator=generator, device=device))  # (B,1)
    partly = torch.rand((b, t), generator=generator, device=device) < hide_ratio  # (B,T)
    hidden = torch.where(is_full[:, None], partly, (is_video | is_policy)[:, None].expand(b, t))  # (B,T)
    scored = hidden & (is_full | is_policy)[:, None]  # (B,T)
    return Masks(tokens=tokens, actions=hidden, action_loss=scored)


def masked_cross_entropy(model: nn.Module, tokens: Tensor, actions: Tensor, *, embodiment: str, setting: Setting,
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


@dataclass
class TokenAccuracy:
    """Counts behind next-frame token accuracy, split by whether the true token changed from the
    frame before (at the same position). Copying the last frame gets exactly the unchanged
    tokens right, so its accuracy is the unchanged share: a model that predicts worse than
    that has learned less than "nothing moves"."""

    unchanged: int = 0
    unchanged_right: int = 0
    changed: int = 0
    changed_right: int = 0

    def __add__(self, other: "TokenAccuracy") -> "TokenAccuracy":
        return TokenAccuracy(self.unchanged + other.unchanged, self.unchanged_right + other.unchanged_right,
                             self.changed + other.changed, self.changed_right + other.changed_right)

    @property
    def tokens(self) -> int:
        return self.unchanged + self.changed

    def summary(self) -> dict[str, float | int | None]:
        """``all``/``unchanged``/``changed``: the share predicted right (None over no token);
        ``copy``: copy-last-frame's ``all``; ``above_copy``: all - copy."""
        def share(right: int, n: int) -> float | None:
            return right / n if n else None

        overall = share(self.unchanged_right + self.changed_right, self.tokens)
        copy = share(self.unchanged, self.tokens)
        return {"all": overall, "unchanged": share(self.unchanged_right, self.unchanged),
                "changed": share(self.changed_right, self.changed), "copy": copy,
                "above_copy": None if overall is None else overall - copy, "tokens": self.tokens}


def add_stay_bias(logits: torch.Tensor, stay: torch.Tensor, bias: float) -> torch.Tensor:
    """``bias`` added to the logit of id ``stay`` (B, S) at each position of plain (B, S, V) logits;
    factorized (B, S, F, Vf) ones get bias / F on each digit of it (their ids are not scored jointly).

    With bias log w this undoes a changed-token weight w (``ModelConfig.changed_token_weight``):
    cross-entropy weighted by outcome learns p(y) w(y), and adding log w to "stays" is the
    same as subtracting it from every "changes" (logit adjustment)."""
    if logits.dim() == 3:
        return logits.scatter_add(-1, stay[..., None], torch.full_like(logits[..., :1], bias))  # (B, S, V)
    factors, size = logits.shape[2], logits.shape[3]
    digits = torch.stack([torch.div(stay, size ** i, rounding_mode="floor") % size for i in range(factors)], -1)  # (B, S, F)
    return logits.scatter_add(-1, digits[..., None], torch.full_like(logits[..., :1], bias / factors))  # (B, S, F, Vf)


def predict_last_frame(model: nn.Module, tokens: Tensor, actions: Tensor, *, embodiment: str, actions_hidden: bool = False,
                       stay_bias: float = 0.0, guidance: float = 1.0) -> Tensor:
    """The model's most likely ids for the last frame of tokens (B,T,h,w), every earlier frame
    true and fully visible, every token of the last one masked: one forward pass, argmax per
    vocabulary digit. ``actions_hidden`` scores a passive (video) model as it was trained;
    ``stay_bias`` and ``guidance`` are the sampler's (hma.sampling.maskgit.MaskGITSampling):
    a bias on each position's previous id, and classifier-free guidance on the action that
    leads to the last frame (a second pass with it hidden)."""
    b, t = tokens.shape[:2]
    c = model.config
    token_mask = torch.zeros_like(tokens, dtype=torch.bool)  # (B,T,h,w)
    token_mask[:, -1] = True

    def last_logits(hide_last_action: bool) -> Tensor:
        action_mask = torch.full((b, t), actions_hidden, dtype=torch.bool, device=tokens.device)  # (B,T)
        action_mask[:, -2] |= hide_last_action  # actions[:, t] is taken at frame t: -2 leads to the last frame
        out = model(tokens, actions, embodiment=embodiment, token_mask=token_mask, action_mask=action_mask)
        return out.logits[:, -1].float()  # (B,S,V) or (B,S,F,Vf)

    last = last_logits(False)
    if guidance != 1.0 and not actions_hidden:
        uncond = last_logits(True)
        last = uncond + guidance * (last - uncond)
    if stay_bias:
        last = add_stay_bias(last, tokens[:, -2].flatten(1), stay_bias)
    if c.vocab_factors == 1:
        ids = last.argmax(-1)  # (B,S)
    else:
        place = c.factor_size ** torch.arange(c.vocab_factors, device=tokens.device)  # (F,)
        ids = (last.argmax(-1) * place).sum(-1)  # (B,S)
    return ids.reshape(b, *c.grid)  # (B,h,w)


def next_frame_token_accuracy(model: nn.Module, tokens: Tensor, actions: Tensor, *, embodiment: str,
                              actions_hidden: bool = False, stay_bias: float = 0.0,
                              guidance: float = 1.0) -> TokenAccuracy:
    """How often :func:`predict_last_frame` gets the last frame's tokens right, split into the
    tokens that stayed as in the frame before and those that changed."""
    pred = predict_last_frame(model, tokens, actions, embodiment=embodiment, actions_hidden=actions_hidden,
                              stay_bias=stay_bias, guidance=guidance)  # (B,h,w)
    truth, before = tokens[:, -1], tokens[:, -2]  # (B,h,w)
    right, changed = pred == truth, truth != before
    return TokenAccuracy(unchanged=int((~changed).sum()), unchanged_right=int((right & ~changed).sum()),
                         changed=int(changed.sum()), changed_right=int((right & changed).sum()))
