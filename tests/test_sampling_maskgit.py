"""MaskGIT schedule, token sampling and position choice (pure functions)."""

import math

import pytest
import torch

from hma.errors import ConfigError
from hma.sampling.maskgit import (
    MaskGITSampling,
    UnmaskOrder,
    choose_positions,
    filter_logits,
    sample_tokens,
    unmask_counts,
)


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("num_tokens,steps", [(256, 2), (64, 2), (64, 8), (5, 5), (1, 1), (100, 12)])
def test_unmask_counts_cover_the_frame_once(num_tokens: int, steps: int) -> None:
    counts = unmask_counts(num_tokens, steps)
    assert len(counts) == steps
    assert sum(counts) == num_tokens
    assert min(counts) >= 1


def test_unmask_counts_follow_the_cosine_schedule() -> None:
    # After step 1 of 2, cos(pi/4) of 256 tokens (181) are still masked: 75 revealed, then 181.
    assert unmask_counts(256, 2) == [256 - math.floor(256 * math.cos(math.pi / 4)), math.floor(256 * math.cos(math.pi / 4))]
    counts = unmask_counts(1000, 10)
    assert counts == sorted(counts)  # few tokens first, when the model knows least


def test_unmask_counts_rejects_more_steps_than_tokens() -> None:
    with pytest.raises(ConfigError, match="steps 9"):
        unmask_counts(8, 9)


def test_temperature_zero_is_argmax_and_ignores_the_generator() -> None:
    logits = torch.randn(2, 16, 50, generator=torch.Generator().manual_seed(0))
    a, conf = sample_tokens(logits, MaskGITSampling(temperature=0.0), torch.Generator().manual_seed(1))
    b, _ = sample_tokens(logits, MaskGITSampling(temperature=0.0), torch.Generator().manual_seed(2))
    assert torch.equal(a, logits.argmax(-1))
    assert torch.equal(a, b)
    assert torch.allclose(conf, logits.softmax(-1).max(-1).values)


def test_top_k_one_equals_greedy() -> None:
    logits = torch.randn(3, 32, 40, generator=torch.Generator().manual_seed(3))
    tokens, _ = sample_tokens(logits, MaskGITSampling(temperature=2.0, top_k=1), torch.Generator().manual_seed(4))
    assert torch.equal(tokens, logits.argmax(-1))


def test_tiny_top_p_equals_greedy_and_top_p_one_keeps_everything() -> None:
    logits = torch.randn(2, 8, 30, generator=torch.Generator().manual_seed(5))
    tokens, _ = sample_tokens(logits, MaskGITSampling(temperature=1.0, top_p=1e-6), torch.Generator().manual_seed(6))
    assert torch.equal(tokens, logits.argmax(-1))
    assert torch.equal(filter_logits(logits, top_p=1.0), logits)


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [[True, True, False, False]]


def test_temperature_changes_the_distribution() -> None:
    # The reference divided probabilities (a no-op after renormalising); dividing logits must matter.
    logits = torch.tensor([[[2.0, 0.0]]]).expand(1, 4000, 2)
    cold, _ = sample_tokens(logits, MaskGITSampling(temperature=0.25), torch.Generator().manual_seed(0))
    hot, _ = sample_tokens(logits, MaskGITSampling(temperature=4.0), torch.Generator().manual_seed(0))
    assert (cold == 0).float().mean() > 0.99  # p = 1 / (1 + e^-8)
    assert 0.55 < (hot == 0).float().mean() < 0.70  # p = 1 / (1 + e^-0.5) = 0.62


def test_same_generator_seed_gives_same_tokens() -> None:
    logits = torch.randn(2, 64, 100, generator=torch.Generator().manual_seed(7))
    a, _ = sample_tokens(logits, MaskGITSampling(), torch.Generator().manual_seed(8))
    b, _ = sample_tokens(logits, MaskGITSampling(), torch.Generator().manual_seed(8))
    c, _ = sample_tokens(logits, MaskGITSampling(), torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("order", list(UnmaskOrder))
def test_choose_positions_reveals_exactly_count_still_masked(order: UnmaskOrder) -> None:
    g = torch.Generator().manual_seed(0)
    masked = torch.rand(4, 64, generator=g) < 0.6
    masked[:, :20] = True  # at least 20 masked per row
    confidence = torch.rand(4, 64, generator=g)
    chosen = choose_positions(confidence, masked, 20, order, torch.Generator().manual_seed(1))
    assert chosen.sum(-1).tolist() == [20] * 4
    assert not (chosen & ~masked).any()


def test_confidence_order_picks_the_most_confident() -> None:
    confidence = torch.tensor([[0.9, 0.1, 0.8, 0.7, 0.95]])
    masked = torch.tensor([[True, True, True, True, False]])  # 0.95 already revealed
    chosen = choose_positions(confidence, masked, 2, UnmaskOrder.CONFIDENCE, None)
    assert chosen.tolist() == [[True, False, True, False, False]]


def test_bad_settings_are_rejected_with_the_value() -> None:
    with pytest.raises(ConfigError, match="-1"):
        MaskGITSampling(temperature=-1)
    with pytest.raises(ConfigError, match="top_p 1.5"):
        MaskGITSampling(top_p=1.5)
    with pytest.raises(ConfigError, match="steps 0"):
        MaskGITSampling(steps=0)
