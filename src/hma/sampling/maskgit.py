"""MaskGIT unmasking for one frame: the cosine schedule, token sampling and position choice.

A new frame starts fully masked and is revealed in K steps (paper, "Masked
autoregression"). At each step the model predicts every still-masked token; we sample a
token for each, then keep only the most confident ones (or a random subset) and leave the
rest masked for the next step. These are pure functions of tensors and an explicit
``torch.Generator``; the loop that calls the model lives in :mod:`hma.sampling.engine`.
"""

from __future__ import annotations

import math
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
    """

    steps: int = 2
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    order: UnmaskOrder = UnmaskOrder.CONFIDENCE

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"unmasking steps {self.steps} is invalid; expected an integer >= 1")
        if self.temperature < 0:
            raise ConfigError(f"temperature {self.temperature} is invalid; expected a number >= 0")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k {self.top_k} is invalid; expected an integer >= 1 or None")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p {self.top_p} is invalid; expected a number in (0, 1] or None")


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

    Returns ``tokens`` (B, S) long and ``confidence`` (B, S): the probability of the chosen
    token under the distribution it was drawn from, used to rank positions.
    """
    logits = filter_logits(logits.float(), top_k=sampling.top_k, top_p=sampling.top_p)  # (B, S, V)
    if sampling.temperature == 0:
        probs = logits.softmax(-1)  # (B, S, V)
        confidence, tokens = probs.max(-1)  # (B, S), (B, S)
        return tokens, confidence
    probs = (logits / sampling.temperature).softmax(-1)  # (B, S, V)
    flat = probs.flatten(0, 1)  # (B*S, V)
    tokens = torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])  # (B, S)
    confidence = probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, S)
    return tokens, confidence


def choose_positions(
    confidence: torch.Tensor,
    masked: torch.Tensor,
    count: int,
    order: UnmaskOrder,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Pick ``count`` still-masked positions per row to reveal.

    ``confidence`` (B, S) scores the candidates (ignored for the random order), ``masked``
    (B, S) bool marks the positions not yet revealed. Returns a (B, S) bool mask of exactly
    ``count`` newly revealed positions per row.
    """
    if order is UnmaskOrder.RANDOM:
        scores = torch.rand(masked.shape, generator=generator, device=masked.device)  # (B, S)
    else:
        scores = confidence.float()  # (B, S)
    scores = scores.masked_fill(~masked, float("-inf"))  # (B, S) revealed tokens never re-chosen
    chosen = torch.topk(scores, count, dim=-1).indices  # (B, count)
    return torch.zeros_like(masked).scatter(-1, chosen, True)  # (B, S)
