"""The world model learns: overfitting, every injection mode, the policy setting, embodiments."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.usefixtures("single_thread")

from _helpers_train import tiny_model_config
from hma.config import EmbodimentSpec, Injection, Setting
from hma.errors import ConfigError, EmbodimentError
from hma.model import WorldModel


def _batch(kind: str, *, b: int = 4, t: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 64, (b, t, 4, 4), generator=g) if kind == "discrete" else torch.randn(b, t, 3, 4, 4, generator=g)
    return {"frames": frames, "actions": torch.randn(b, t, 3, generator=g), "embodiment": "arm"}


def _train(model: WorldModel, batch: dict, steps: int, *, lr: float = 3e-3, key: str = "loss",
           fixed_noise: bool = True) -> tuple[float, float]:
    """First and last value of metric ``key``; the same masks/noise every step when ``fixed_noise``."""
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    values = []
    for _ in range(steps):
        if fixed_noise:
            g.manual_seed(1)
        loss, metrics = model.loss(batch, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(metrics[key])
    return values[0], sum(values[-5:]) / 5


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_tiny_model_overfits_one_batch(kind: str) -> None:
    torch.manual_seed(0)
    model = WorldModel(tiny_model_config(kind))
    batch = {**_batch(kind), "setting": Setting.FORWARD}
    first, last = _train(model, batch, 100, lr=5e-3)
    assert last <= 0.1 * first, (first, last)


@pytest.mark.parametrize("injection", ["concat", "modulate", "add", "cross_attention", "concat+modulate"])
def test_every_injection_mode_trains(injection: str) -> None:
    torch.manual_seed(0)
    model = WorldModel(tiny_model_config(injection=injection))
    first, last = _train(model, {**_batch("discrete"), "setting": Setting.FULL}, 30)
    assert last < 0.8 * first, (injection, first, last)


def test_injection_modes_parse_and_combine() -> None:
    flags = Injection.parse("concat+modulate")
    assert Injection.CONCAT in flags and Injection.MODULATE in flags and Injection.ADD not in flags
    assert Injection.parse("add+cross_attention").to_text() == "add+cross_attention"
    with pytest.raises(ConfigError, match="'film'"):
        Injection.parse("concat+film")


def test_policy_setting_learns_actions() -> None:
    torch.manual_seed(0)
    model = WorldModel(tiny_model_config())
    first, last = _train(model, {**_batch("discrete"), "setting": Setting.POLICY}, 60, key="action_mse")
    assert last < 0.5 * first, (first, last)


def test_actions_reach_the_next_frame_only() -> None:
    """actions[:, t] leads to frame t+1: it changes outputs of frames > t and never of frames <= t."""
    torch.manual_seed(0)
    model = WorldModel(tiny_model_config(injection="concat+modulate+add+cross_attention")).eval()
    for p in model.parameters():  # leave no zero-initialized path that would hide a leak
        if not p.abs().sum():
            p.data.normal_(0, 0.1)
    batch = _batch("discrete")
    changed = batch["actions"].clone()
    changed[:, 1] += 1.0
    with torch.no_grad():
        a = model(batch["frames"], batch["actions"], embodiment="arm")
        b = model(batch["frames"], changed, embodiment="arm")
    diff = (a.logits - b.logits).abs().amax(dim=(0, 2, 3))  # (T,)
    assert diff[:2].max() == 0 and (diff[2:] > 0).all(), diff
    assert torch.equal(a.action_pred[:, :2], b.action_pred[:, :2])


def test_adding_an_embodiment_changes_no_other_weight() -> None:
    torch.manual_seed(0)
    model = WorldModel(tiny_model_config())
    _train(model, _batch("discrete"), 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.add_embodiment(EmbodimentSpec("gripper", 5, 2, [0.0] * 10, [1.0] * 10))
    after = model.state_dict()
    new = {k for k in after if k not in before}
    assert new and all(k.startswith(("stems.gripper.", "heads.gripper.")) for k in new)
    assert all(torch.equal(before[k], after[k]) for k in before)
    out = model(torch.randint(0, 64, (2, 4, 4, 4)), torch.randn(2, 4, 10), embodiment="gripper")
    assert out.action_pred.shape == (2, 4, 10)


def test_unknown_embodiment_and_wrong_action_size_are_clear_errors() -> None:
    model = WorldModel(tiny_model_config())
    tokens = torch.randint(0, 64, (1, 4, 4, 4))
    with pytest.raises(EmbodimentError, match="'dog' is unknown"):
        model(tokens, torch.zeros(1, 4, 3), embodiment="dog")
    with pytest.raises(EmbodimentError, match="have 7 values per frame, expected 3"):
        model(tokens, torch.zeros(1, 4, 7), embodiment="arm")


def test_factorized_vocabulary_round_trips_digits() -> None:
    torch.manual_seed(0)
    model = WorldModel(tiny_model_config(vocab_size=1000, vocab_factors=2))  # 2 digits of 32
    batch = {**_batch("discrete"), "setting": Setting.FORWARD}
    batch["frames"] = torch.randint(0, 1000, (4, 4, 4, 4))
    out = model(batch["frames"], batch["actions"], embodiment="arm")
    assert out.logits.shape == (4, 4, 16, 2, 32)
    first, last = _train(model, batch, 40)
    assert last < first


def test_changed_token_weight_weighs_the_tokens_that_differ_from_the_frame_before() -> None:
    torch.manual_seed(0)
    model = WorldModel(tiny_model_config())
    batch = {**_batch("discrete"), "setting": Setting.FORWARD}
    batch["frames"][:, 1:, :2] = batch["frames"][:, :1, :2]  # the top half of every frame repeats frame 0
    losses = {}
    for w in (1.0, 5.0):
        model.config.changed_token_weight = w
        losses[w], _ = model.loss(batch, generator=torch.Generator().manual_seed(3))
    # The same masks and logits, weighted by hand: changed tokens count 5x.
    tokens = batch["frames"]
    changed = torch.zeros_like(tokens, dtype=torch.bool)
    changed[:, 1:] = tokens[:, 1:] != tokens[:, :-1]
    assert changed[:, 1:, :2].sum() == 0 and changed[:, 1:, 2:].float().mean() > 0.9
    from hma.model.objectives import sample_masks

    masks = sample_masks(4, 4, 16, Setting.FORWARD, generator=torch.Generator().manual_seed(3), device=tokens.device)
    out = model(tokens, batch["actions"], embodiment="arm",
                token_mask=masks.tokens.reshape(4, 4, 4, 4), action_mask=masks.actions)
    weight = 1.0 + 4.0 * changed.flatten(2).float()
    expected = model.token_cross_entropy(out.logits, tokens, masks.tokens, weight=weight)
    assert float(losses[5.0]) == pytest.approx(float(expected), rel=1e-5)
    assert float(losses[5.0]) != pytest.approx(float(losses[1.0]), rel=1e-3)
    with pytest.raises(ConfigError, match="changed_token_weight"):
        tiny_model_config(changed_token_weight=0.0)


@pytest.mark.parametrize("factors", [1, 2])
def test_training_loss_scores_the_masked_tokens_of_the_full_logits(factors: int) -> None:
    # The loss runs the vocabulary heads on the masked positions only; it must equal the
    # cross-entropy of the full forward's logits at those positions.
    torch.manual_seed(0)
    model = WorldModel(tiny_model_config(vocab_size=64 if factors == 1 else 1000, vocab_factors=factors))
    batch = {**_batch("discrete"), "setting": Setting.FULL}
    loss, metrics = model.loss(batch, generator=torch.Generator().manual_seed(5))
    from hma.model.objectives import sample_masks

    masks = sample_masks(4, 4, 16, Setting.FULL, generator=torch.Generator().manual_seed(5), device=torch.device("cpu"))
    assert 0 < masks.tokens.float().mean() < 1
    out = model(batch["frames"], batch["actions"], embodiment="arm", token_mask=masks.tokens.reshape(4, 4, 4, 4),
                action_mask=masks.actions)
    expected = model.token_cross_entropy(out.logits, batch["frames"], masks.tokens)
    assert metrics["token_ce"] == pytest.approx(float(expected), rel=1e-5)
    action = ((out.action_pred - batch["actions"]).pow(2).mean(-1) * masks.action_loss).sum() / masks.action_loss.sum()
    assert float(loss) == pytest.approx(float(expected + action), rel=1e-5)


def _state_model(kind: str = "discrete") -> WorldModel:
    """The tiny model with a 2-value state for its embodiment."""
    torch.manual_seed(0)
    config = tiny_model_config(kind)
    spec = config.embodiments["arm"]
    spec.state_names, spec.state_mean, spec.state_std = ["x", "y"], [0.0, 0.0], [1.0, 1.0]
    return WorldModel(config)


def test_the_state_head_learns_the_state_of_each_frame() -> None:
    model = _state_model()
    batch = _batch("discrete")
    # The state is a function of the frame (its mean token id and its first token): learnable.
    frames = batch["frames"].float()
    state = torch.stack([frames.mean((2, 3)) / 32 - 1, frames[:, :, 0, 0] / 32 - 1], dim=-1)  # (B,T,2)
    first, last = _train(model, {**batch, "state": state, "setting": Setting.FULL}, 60, key="state_mse")
    assert last < 0.3 * first, (first, last)
    # Without a state in the batch the head is not scored; a model without a head ignores one.
    assert "state_mse" not in model.loss(batch)[1]
    plain = WorldModel(tiny_model_config())
    assert "state_mse" not in plain.loss({**batch, "state": state})[1] and not len(plain.state_heads)


def test_committed_frames_read_out_the_states_of_the_window_forward() -> None:
    model = _state_model().eval()
    batch = _batch("discrete", b=2, t=4)
    tokens, actions = batch["frames"], batch["actions"]
    with torch.no_grad():
        full = model(tokens, actions, embodiment="arm").state_pred  # (B,T,2), every frame visible
        cache = model.new_cache(2)
        prefilled = model.prefill(tokens[:, :2], actions[:, :2], embodiment="arm", cache=cache)
        committed = [model.commit_frame(tokens[:, t], actions[:, t - 1], embodiment="arm", cache=cache) for t in (2, 3)]
        plain = WorldModel(tiny_model_config()).eval()
        assert plain.commit_frame(tokens[:, 0], None, embodiment="arm", cache=plain.new_cache(2)) is None  # no head
    torch.testing.assert_close(prefilled, full[:, 1], rtol=1e-4, atol=1e-5)
    for t, state in zip((2, 3), committed):
        torch.testing.assert_close(state, full[:, t], rtol=1e-4, atol=1e-5)


def test_state_statistics_must_match_the_state_names() -> None:
    with pytest.raises(ConfigError, match="state statistics have 1/2 entries, expected one per state name"):
        EmbodimentSpec("arm", 3, 1, [0.0] * 3, [1.0] * 3, state_names=["x", "y"], state_mean=[0.0], state_std=[1.0, 1.0])


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_action_dropout_hides_that_share_of_the_actions_in_forward_training(dropout: float, monkeypatch) -> None:
    from _helpers_sampling import context_and_actions, tiny_model

    from hma.config import Setting

    model = tiny_model()
    model.config.action_dropout = dropout
    seen = []
    original = model._window_hidden

    def spy(tokens, actions, embodiment, token_mask, action_mask):
        seen.append(action_mask)
        return original(tokens, actions, embodiment, token_mask, action_mask)

    monkeypatch.setattr(model, "_window_hidden", spy)
    frames, actions = context_and_actions(model, batch=64, context=4, new=0)
    loss, _ = model.loss({"frames": frames, "actions": torch.cat([actions, actions[:, :1]], dim=1), "embodiment": "arm",
                          "setting": Setting.FORWARD}, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    assert float(seen[0].float().mean()) == pytest.approx(dropout, abs=0.06)


def test_action_dropout_and_context_corruption_out_of_range_are_refused() -> None:
    from hma.config import preset
    from hma.errors import ConfigError

    for bad in ({"action_dropout": 1.0}, {"action_dropout": -0.1}, {"corrupt_max": 1.5}):
        with pytest.raises(ConfigError, match="action_dropout|corrupt_max"):
            preset("tiny", **bad)


def test_visible_past_samples_see_every_frame_before_the_first_masked_one() -> None:
    from hma.model.objectives import sample_masks

    gen = torch.Generator().manual_seed(0)
    plain = sample_masks(64, 5, 16, Setting.FORWARD, generator=gen, device=torch.device("cpu")).tokens
    clean = sample_masks(64, 5, 16, Setting.FORWARD, generator=gen, device=torch.device("cpu"), visible_past=1.0).tokens
    masked_frames = clean.any(-1)  # (B,T)
    first = masked_frames.float().argmax(-1)  # (B,)
    assert bool((first >= 1).all()) and len(set(first.tolist())) == 4  # every frame 1..4 is drawn as the first
    after = torch.arange(5)[None] >= first[:, None]
    assert bool(masked_frames[after].all())  # from the first masked frame on, every frame keeps its masked tokens
    # Without it, almost every sample has a partly masked frame before its last one.
    assert plain[:, 1:-1].any(-1).any(-1).float().mean() > 0.9
    with pytest.raises(ConfigError, match="visible_past"):
        tiny_model_config(visible_past=1.5)
