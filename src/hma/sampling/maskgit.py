"""MaskGIT unmasking for one frame: the cosine schedule, token sampling and position choice.

A new frame starts fully masked and is revealed in K steps (paper, "Masked
autoregression"). At each step the model predicts every still-masked token; we sample a
token for each, then keep only the most confident ones (or a random subset) and leave the
rest masked for the next step. These are pure functions of tensors and an explicit
``torch.Generator``; the loop that calls the model lives in :mod:`hma.sampling.engine`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch

from hma.errors import ConfigError


class UnmaskOrder(str, Enum):
    """Which still-masked positions a step reveals."""

    CONFIDENCE = "confidence"  # the positions whose sampled token is most probable (MaskGIT)
    RANDOM = "random"  # a uniformly random subset (MAR's order; also an ablation for MaskGIT)


@dataclass(frozen=True)
class MaskGITSampling:
    """Settings of discrete frame sampling.

    ``temperature`` divides the logits (0 = greedy argmax). The reference divides the
    probabilities instead, which the softmax then renormalises away; dividing logits is
    what makes the knob do anything.

    ``stay_bias`` is added to the logit of the token each position held in the frame before.
    A model trained with changed tokens weighted w learns p(y) w(y) instead of p(y), so its
    argmax favours change; log w undoes that (logit adjustment). ``guidance`` is
    classifier-free guidance on the action: logits = uncond + guidance (cond - uncond), the
    unconditional pass seeing the new frame's action hidden (1 = off, one pass).
    """

    steps: int = 2
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    order: UnmaskOrder = UnmaskOrder.CONFIDENCE
    stay_bias: float = 0.0
    guidance: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"unmasking steps {self.steps} is invalid; expected an integer >= 1")
        if self.temperature < 0:
            raise ConfigError(f"temperature {self.temperature} is invalid; expected a number >= 0")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k {self.top_k} is invalid; expected an integer >= 1 or None")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p {self.top_p} is invalid; expected a number in (0, 1] or None")
        if not math.isfinite(self.stay_bias):
            raise ConfigError(f"stay bias {self.stay_bias} is invalid; expected a finite number")
        if not (math.isfinite(self.guidance) and self.guidance >= 0):
            raise ConfigError(f"action guidance {self.guidance} is invalid; expected a finite number >= 0")


def unmask_counts(num_tokens: int, steps: int) -> list[int]:
    """How many tokens each of ``steps`` steps reveals, on the cosine schedule.

    After step k (1..K) a fraction cos(pi/2 * k/K) of the frame is still masked, so early
    steps reveal few tokens (when the model knows least) and later steps many. Every step
    reveals at least one token and the counts sum to ``num_tokens``.
    """
    if steps < 1 or steps > num_tokens:
        raise ConfigError(f"unmasking steps {steps} is invalid for {num_tokens} tokens; expected 1..{num_tokens}")
    still_masked = [math.floor(num_tokens * math.cos(math.pi / 2 * k / steps)) for k in range(steps + 1)]
    still_masked[-1] = 0  # cos(pi/2) is 6e-17, not 0
    counts: list[int] = []
    for k in range(steps - 1):
        # Clamp so no step is empty and every later step keeps at least one token.
        remaining = num_tokens - sum(counts)
        counts.append(min(max(still_masked[k] - still_masked[k + 1], 1), remaining - (steps - k - 1)))
    counts.append(num_tokens - sum(counts))  # the last step reveals everything left
    return counts


def filter_logits(logits: torch.Tensor, *, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the top-k / nucleus (top-p) set to -inf; shape is kept (..., V)."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)  # (..., V)
        # Drop a token when the tokens before it already cover top_p; the first always stays.
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p  # (..., V)
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # (..., V)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_tokens(
    logits: torch.Tensor,
    sampling: MaskGITSampling,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per position from ``logits`` (B, S, V).

    Returns ``tokens`` (B, S) long and ``confidence`` (B, S): the model's own probability
    of the chosen token (plain softmax of the logits), used to rank positions. It does not
    depend on temperature/top-k/top-p, so those knobs change which tokens are drawn, not
    how a given draw is ranked (top-k = 1 is then exactly greedy decoding).
    """
    logits = logits.float()
    model_probs = logits.softmax(-1)  # (B, S, V)
    if sampling.temperature == 0:
        confidence, tokens = model_probs.max(-1)  # (B, S), (B, S)
        return tokens, confidence
    filtered = filter_logits(logits, top_k=sampling.top_k, top_p=sampling.top_p)  # (B, S, V)
    probs = (filtered / sampling.temperature).softmax(-1)  # (B, S, V)
    tokens = torch.multinomial(probs.flatten(0, 1), 1, generator=generator).view(probs.shape[:-1])  # (B, S)
    confidence = model_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, S)
    return tokens, confidence


def choose_positions(
    confidence: torch.Tensor | None,
    masked: torch.Tensor,
    count: int,
    order: UnmaskOrder,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Pick ``count`` still-masked positions per row to reveal.

    ``confidence`` (B, S) scores the candidates (unused, may be None, for the random order), ``masked``
    (B, S) bool marks the positions not yet revealed. Returns a (B, S) bool mask of exactly
    ``count`` newly revealed positions per row.
    """
    if order is UnmaskOrder.RANDOM or confidence is None:
        scores = torch.rand(masked.shape, generator=generator, device=masked.device)  # (B, S)
    else:
        scores = confidence.float()  # (B, S)
    scores = scores.masked_fill(~masked, float("-inf"))  # (B, S) revealed tokens never re-chosen
    chosen = torch.topk(scores, count, dim=-1).indices  # (B, count)
    return torch.zeros_like(masked).scatter(-1, chosen, True)  # (B, S)


def sample_digits(
    logits: torch.Tensor,
    sampling: MaskGITSampling,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample token ids from plain (B, S, V) or factorized (B, S, F, Vf) logits.

    A factorized vocabulary (the reference's 2^18 ids as two 512-way digits) is predicted
    as independent digits: each digit is sampled on its own, the id is
    sum_i digit_i * Vf**i, and its confidence is the product of the digits' probabilities.
    """
    if logits.dim() == 3:
        return sample_tokens(logits, sampling, generator)
    B, S, F_, Vf = logits.shape
    digits, confidence = sample_tokens(logits.reshape(B, S * F_, Vf), sampling, generator)  # (B, S*F)
    digits, confidence = digits.view(B, S, F_), confidence.view(B, S, F_)
    place = Vf ** torch.arange(F_, device=logits.device)  # (F,)
    return (digits * place).sum(-1), confidence.prod(-1)  # (B, S), (B, S)


def unmask_token_frame(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    batch: int,
    grid: tuple[int, int],
    sampling: MaskGITSampling,
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """Fill one frame of token ids in ``sampling.steps`` steps; returns (B, h, w) long.

    ``predict(tokens (B, h, w), masked (B, h, w)) -> logits (B, S, V) or (B, S, F, Vf)``
    runs the model on the partly revealed frame (cached or not: the caller decides).
    Revealed tokens are kept; only still-masked positions are sampled and ranked.
    """
    h, w = grid
    tokens = torch.zeros((batch, h * w), device=device, dtype=torch.long)  # (B, S)
    masked = torch.ones((batch, h * w), device=device, dtype=torch.bool)  # (B, S)
    for count in unmask_counts(h * w, sampling.steps):
        logits = predict(tokens.view(batch, h, w), masked.view(batch, h, w))  # (B, S, V) or (B, S, F, Vf)
        sampled, confidence = sample_digits(logits, sampling, generator)  # (B, S), (B, S)
        reveal = choose_positions(confidence, masked, count, sampling.order, generator)  # (B, S)
        tokens = torch.where(reveal, sampled, tokens)  # (B, S)
        masked &= ~reveal
    return tokens.view(batch, h, w)
