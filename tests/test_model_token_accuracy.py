"""Next-frame token accuracy (hma.model.objectives): the diagnostic that says whether a model
predicts the next frame better than copying the last one, on toy models whose answer is known."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F

from hma.config import ModelConfig
from hma.model.objectives import TokenAccuracy, next_frame_token_accuracy, predict_last_frame

GRID, VOCAB = (2, 3), 16


class ToyModel:
    """Puts all of its belief on ``choose(tokens)`` for every frame; records the masks it was given."""

    def __init__(self, choose, *, vocab_factors: int = 1) -> None:
        self.config = ModelConfig(grid=GRID, vocab_size=VOCAB, vocab_factors=vocab_factors, num_frames=3)
        self.choose = choose
        self.masks: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, tokens, actions, *, embodiment, token_mask, action_mask):
        self.masks.append((token_mask, action_mask))
        ids = self.choose(tokens).flatten(2)  # (B,T,S)
        c = self.config
        if c.vocab_factors == 1:
            logits = F.one_hot(ids, VOCAB).float()  # (B,T,S,V)
        else:
            digits = torch.stack([ids // c.factor_size ** i % c.factor_size for i in range(c.vocab_factors)], -1)
            logits = F.one_hot(digits, c.factor_size).float()  # (B,T,S,F,Vf)
        return SimpleNamespace(logits=logits)


def _copy_last(tokens):
    out = tokens.clone()
    out[:, -1] = tokens[:, -2]  # the last frame predicted as the one before it
    return out


def _tokens(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (4, 3, *GRID), generator=g)  # (B,T,h,w)
    keep = torch.rand((4, *GRID), generator=g) < 0.6
    tokens[:, -1] = torch.where(keep, tokens[:, -2], tokens[:, -1])  # about 60% of the last frame stays
    return tokens


@pytest.mark.parametrize("factors", [1, 2])
def test_a_model_that_copies_the_last_frame_scores_one_on_unchanged_and_zero_on_changed(factors):
    tokens = _tokens()
    model = ToyModel(_copy_last, vocab_factors=factors)
    acc = next_frame_token_accuracy(model, tokens, torch.zeros(4, 3, 2), embodiment="toy").summary()
    changed = tokens[:, -1] != tokens[:, -2]
    assert 0 < int(changed.sum()) < changed.numel()
    assert acc["unchanged"] == 1.0 and acc["changed"] == 0.0
    assert acc["copy"] == pytest.approx(1 - changed.float().mean().item())
    assert acc["all"] == pytest.approx(acc["copy"]) and acc["above_copy"] == pytest.approx(0.0)
    assert acc["tokens"] == changed.numel()


@pytest.mark.parametrize("factors", [1, 2])
def test_a_model_right_only_where_tokens_changed_is_scored_on_those_tokens(factors):
    tokens = _tokens(1)
    changed = tokens[:, -1] != tokens[:, -2]

    def right_where_changed(t):
        out = t.clone()
        out[:, -1] = torch.where(changed, t[:, -1], (t[:, -2] + 1) % VOCAB)  # wrong on every unchanged token
        return out

    acc = next_frame_token_accuracy(ToyModel(right_where_changed, vocab_factors=factors), tokens,
                                    torch.zeros(4, 3, 2), embodiment="toy")
    assert acc == TokenAccuracy(unchanged=int((~changed).sum()), unchanged_right=0, changed=int(changed.sum()),
                                changed_right=int(changed.sum()))
    assert acc.summary()["all"] == pytest.approx(changed.float().mean().item())


def test_the_last_frame_alone_is_masked_and_the_actions_are_visible_unless_hidden():
    tokens = _tokens()
    model = ToyModel(_copy_last)
    pred = predict_last_frame(model, tokens, torch.zeros(4, 3, 2), embodiment="toy")
    assert torch.equal(pred, tokens[:, -2])
    token_mask, action_mask = model.masks[-1]
    assert token_mask[:, -1].all() and not token_mask[:, :-1].any()
    assert not action_mask.any()
    predict_last_frame(model, tokens, torch.zeros(4, 3, 2), embodiment="toy", actions_hidden=True)
    assert model.masks[-1][1].all()


def test_counts_add_up_and_an_empty_count_has_no_shares():
    a = TokenAccuracy(unchanged=3, unchanged_right=2, changed=1, changed_right=1)
    b = TokenAccuracy(unchanged=1, unchanged_right=1, changed=3, changed_right=0)
    total = (a + b).summary()
    assert total["all"] == pytest.approx(4 / 8) and total["copy"] == pytest.approx(4 / 8)
    assert total["unchanged"] == pytest.approx(3 / 4) and total["changed"] == pytest.approx(1 / 4)
    assert TokenAccuracy().summary()["all"] is None and TokenAccuracy().summary()["changed"] is None


def test_the_samplers_stay_bias_and_guidance_reach_the_prediction():
    tokens = _tokens(2)
    oracle = ToyModel(lambda t: t)  # all belief on the true last frame
    pred = predict_last_frame(oracle, tokens, torch.zeros(4, 3, 2), embodiment="toy", stay_bias=1e4)
    assert torch.equal(pred, tokens[:, -2])  # the bias outweighs the model: every token stays
    predict_last_frame(oracle, tokens, torch.zeros(4, 3, 2), embodiment="toy", guidance=2.0)
    (_, with_action), (_, without) = oracle.masks[-2:]
    assert not with_action.any() and without[:, -2].all() and not without[:, [0, 2]].any()
