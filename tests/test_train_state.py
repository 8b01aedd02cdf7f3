"""The training stack itself: TrainState round trips, the budget, fit's loop and the checkpoint journal."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from hma.errors import CheckpointError, ConfigError, TrainingError
from hma.train import checkpoint as ckpt
from hma.train.fit import fit
from hma.train.state import Budget, TrainState


def _state(seed: int = 0) -> tuple[TrainState, torch.nn.Module, torch.Generator, np.random.Generator]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    gen, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    state = TrainState(model, torch.optim.AdamW(model.parameters(), lr=1e-2), warmup=2, total_steps=8, ema=0.9,
                       generators={"data": gen}, numpy_rngs={"order": rng})
    return state, model, gen, rng


def _loss_fn(model, gen, rng):
    def loss_fn():
        x = torch.randn(16, 3, generator=gen) + float(rng.normal())
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()  # dropout draws from the default generator
        return loss, {"loss": loss.item()}

    return loss_fn


def _save_to(folder):
    def save(state: TrainState) -> None:
        tensors, meta = state.files()
        weights = safetensors_bytes({k: v.contiguous() for k, v in state.weights().items()})
        ckpt.write_checkpoint(folder, weights=weights, config={"step": state.step}, tensors=tensors, state=meta)

    return save


def test_a_restored_state_continues_exactly_as_the_uninterrupted_one(tmp_path):
    straight, model, gen, rng = _state()
    fit(straight, _loss_fn(model, gen, rng), Budget(steps=8))

    first, model, gen, rng = _state()
    save = _save_to(tmp_path / "run")
    fit(first, _loss_fn(model, gen, rng), Budget(steps=8, stop_at=3), save=lambda: save(first))
    torch.manual_seed(123)  # the default generator is part of the saved state, whatever happened since
    resumed, model, gen, rng = _state(seed=1)  # other initial weights and seeds: all restored below
    model.load_state_dict(ckpt.state_tensors(tmp_path / "run")("model_raw"))
    meta = ckpt.read_training_state(tmp_path / "run")
    resumed.restore(ckpt.state_tensors(tmp_path / "run"), meta)
    assert resumed.step == 3 and resumed.lr == pytest.approx(first.lr)
    fit(resumed, _loss_fn(model, gen, rng), Budget(steps=8))
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, atol=0, rtol=0)
    for key, value in straight.ema.shadow.items():
        torch.testing.assert_close(resumed.ema.shadow[key], value, atol=0, rtol=0)


def test_constant_learning_rate_and_budget_checks():
    state, model, gen, rng = _state()
    constant = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.5), floor=1.0)
    fit(constant, _loss_fn(model, gen, rng), Budget(steps=5))
    assert constant.lr == 0.5 and constant.step == 5
    for bad in (dict(), dict(steps=3, minutes=1.0)):
        with pytest.raises(ConfigError, match="exactly one training budget"):
            Budget(**bad)
    with pytest.raises(ConfigError, match="--steps 0"):
        Budget(steps=0)
    assert Budget(steps=10).scaled(2).steps == 20 and Budget(minutes=2.0).scaled(0.5).minutes == 1.0


def test_a_diverging_loss_is_a_training_error():
    state, model, gen, rng = _state()
    with pytest.raises(TrainingError, match="diverged"):
        fit(state, lambda: (model(torch.full((2, 3), float("nan"))).sum(), {"loss": float("nan")}), Budget(steps=2))


def test_a_checkpoint_killed_while_moving_into_place_is_completed(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    state, model, gen, rng = _state()
    save = _save_to(folder)
    fit(state, _loss_fn(model, gen, rng), Budget(steps=8, stop_at=2), save=lambda: save(state))
    first_weights = (folder / ckpt.MODEL_FILE).read_bytes()
    fit(state, _loss_fn(model, gen, rng), Budget(steps=8, stop_at=4))

    real_replace, calls = os.replace, {"n": 0}

    def replace_then_die(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:  # the state folder is swapped in, the weights are not yet
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        save(state)
    monkeypatch.setattr(ckpt.os, "replace", real_replace)
    assert (folder / ckpt.MODEL_FILE).read_bytes() == first_weights  # the old weights beside the new state
    with pytest.raises(CheckpointError, match="interrupted"):
        ckpt.read_training_state(folder)
    ckpt.finish_interrupted(folder)
    assert json.loads((folder / ckpt.STATE_DIR / ckpt.STATE_FILE).read_text())["step"] == 4
    assert ckpt.read_training_state(folder)["step"] == 4 and not list(folder.glob(".checkpoint.tmp.*"))
    assert (folder / ckpt.MODEL_FILE).read_bytes() != first_weights


def test_a_checkpoint_killed_while_being_written_is_discarded(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    state, model, gen, rng = _state()
    save = _save_to(folder)
    fit(state, _loss_fn(model, gen, rng), Budget(steps=8, stop_at=2), save=lambda: save(state))
    before = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    fit(state, _loss_fn(model, gen, rng), Budget(steps=8, stop_at=4))

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_file", die)
    with pytest.raises(KeyboardInterrupt):
        save(state)
    assert list(folder.glob(".checkpoint.tmp.*"))
    ckpt.finish_interrupted(folder)
    after = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before and ckpt.read_training_state(folder)["step"] == 2
