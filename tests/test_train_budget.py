"""Honest time budgets: a `--minutes N` run ends within N minutes when the machine slows down, by
re-planning its schedule or, failing that, by stopping at the deadline with a checkpoint, and says which."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import torch

import hma.train.state as budget_module  # where Budget reads its clock
from _helpers_robustness import hma_command, subprocess_env
from _helpers_train import make_tokenized
from hma.cli import main
from hma.train.fit import fit
from hma.train.state import Budget, TrainState

pytestmark = pytest.mark.usefixtures("single_thread")


class FakeClock:
    """The budget's clock: each optimizer step takes ``seconds(step)`` of (simulated) wall time."""

    def __init__(self, seconds) -> None:
        self.now, self.steps, self.seconds = 0.0, 0, seconds

    def tick(self) -> None:
        self.steps += 1
        self.now += self.seconds(self.steps)


def _install(monkeypatch, clock: FakeClock) -> None:
    monkeypatch.setattr(budget_module, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))


def _tiny_state() -> tuple[TrainState, torch.nn.Module]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    return TrainState(model, torch.optim.SGD(model.parameters(), lr=1e-3), warmup=2), model


def _loss_fn(model, clock: FakeClock):
    def loss_fn():
        clock.tick()
        loss = model(torch.ones(4, 3)).pow(2).mean()
        return loss, {"loss": loss.item()}

    return loss_fn


def _tick_on_optimizer_steps(monkeypatch, clock) -> None:
    """The fake clock moves on at every optimizer step (each AdamW step takes the clock's time)."""
    original = torch.optim.AdamW.step

    def timed_step(self, *args, **kwargs):
        clock.tick()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", timed_step)
    _install(monkeypatch, clock)


def test_a_sudden_slowdown_stops_the_run_at_the_deadline_with_a_checkpoint_and_says_so(tmp_path, monkeypatch, capsys):
    """0.5 s a step, planned for 120 steps in 1 minute; from step 61 on a step takes 20 s: no
    re-plan can come in time, so the run stops at the deadline (step 62, t = 70 s), checkpointed."""
    clock = FakeClock(lambda step: 0.5 if step <= 60 else 20.0)
    _tick_on_optimizer_steps(monkeypatch, clock)
    data, tok = make_tokenized(tmp_path)
    run = tmp_path / "run"
    argv = ["train", "--data", str(data[0]), "--tokenizer", str(tok), "--out", str(run), "--minutes", "1",
            "--batch-size", "2", "--num-blocks", "1", "--eval-windows", "2", "--eval-every", "0", "--no-progress"]
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "stopped at the 1-minute deadline at step 62 of 120 planned (1.2 min)"
    state = json.loads((run / "training_state" / "state.json").read_text())
    assert state["step"] == state["total_steps"] == 62 and state["seconds"] == pytest.approx(70.0)
    assert (run / "model.safetensors").is_file() and json.loads((run / "eval.json").read_text())["step"] == 62
    # Resuming the stopped run trains no further: its deadline has passed, the checkpoint stays at step 62.
    assert main([*argv, "--resume"]) == 0
    assert json.loads((run / "training_state" / "state.json").read_text())["step"] == 62


def test_hma_tokenizer_train_ends_with_how_its_budget_ended(tmp_path, monkeypatch, capsys):
    from _helpers_train import make_dataset

    clock = FakeClock(lambda step: 1.0)
    _tick_on_optimizer_steps(monkeypatch, clock)
    make_dataset(tmp_path / "data" / "arm", embodiment="arm", action_dim=2, episodes=2, length=8)
    assert main(["tokenizer", "train", "--data", str(tmp_path / "data"), "--kind", "discrete", "--out",
                 str(tmp_path / "tok"), "--minutes", "0.5", "--batch-size", "4", "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("wrote ")
    assert lines[-1] == "planned 30 steps from the measured speed to fill 0.5 minutes (0.5 min)"


def test_a_gradual_slowdown_replans_the_schedule_to_end_on_time(monkeypatch):
    """10 minutes at 0.5 s a step plans 1200 steps; from step 300 a step takes 1 s, and the
    re-plans shorten the schedule to the 750 steps that fit: it ends on time, not cut."""
    clock = FakeClock(lambda step: 0.5 if step <= 300 else 1.0)
    _install(monkeypatch, clock)
    state, model = _tiny_state()
    budget = Budget(minutes=10.0)
    fit(state, _loss_fn(model, clock), budget)
    assert state.step == state.schedule.total_steps == 750 and clock.now == pytest.approx(600.0)
    assert budget.summary() == ("re-planned to 750 steps (first planned 1200) from the measured speed "
                                "to end within 10 minutes (10.0 min)")
    assert state.lr == pytest.approx(1e-3 * 0.1)  # the cosine schedule ran to its end at the new length


def test_a_resumed_timed_run_counts_the_minutes_already_trained(tmp_path, monkeypatch):
    """Killed after 15 s of a 1-minute budget and resumed 100 s later: it trains the 45 s left."""
    clock = FakeClock(lambda step: 0.5)
    _install(monkeypatch, clock)
    first, model = _tiny_state()
    fit(first, _loss_fn(model, clock), Budget(minutes=1.0, stop_at=30))
    tensors, meta = first.files()
    assert first.step == 30 and meta["seconds"] == pytest.approx(15.0)
    clock.now += 100.0  # the machine was off
    resumed, model = _tiny_state()
    resumed.restore(lambda name: tensors[name], json.loads(json.dumps(meta)))
    budget = Budget(minutes=1.0)
    fit(resumed, _loss_fn(model, clock), budget)
    assert resumed.step == resumed.schedule.total_steps == 120 and resumed.seconds == pytest.approx(60.0)
    assert budget.summary().startswith("planned 120 steps")


def test_every_rank_stops_when_one_runs_out_of_time(monkeypatch):
    """``agree`` takes the ranks' minimum: another rank out of time from step 70 stops this one there too."""
    clock = FakeClock(lambda step: 0.5)
    _install(monkeypatch, clock)
    state, model = _tiny_state()
    budget = Budget(minutes=1.0, agree=lambda n: min(n, state.step) if state.step >= 70 else n)
    fit(state, _loss_fn(model, clock), budget)
    assert state.step == state.schedule.total_steps == 70
    assert budget.summary() == "stopped at the 1-minute deadline at step 70 of 120 planned (0.6 min)"


def test_a_step_budget_has_no_deadline_and_no_closing_line(monkeypatch):
    clock = FakeClock(lambda step: 100.0)
    _install(monkeypatch, clock)
    state, model = _tiny_state()
    budget = Budget(steps=5)
    fit(state, _loss_fn(model, clock), budget)
    assert state.step == 5 and state.seconds == pytest.approx(500.0) and budget.summary() is None


@pytest.mark.slow
def test_a_two_minute_run_beside_a_cpu_hog_ends_within_two_and_a_half_minutes(tmp_path):
    """The real clock: `hma train --minutes 2` plans its steps on an idle machine, then every core
    gets a busy-looping process beside it (from 30 s on); the run still ends within 2.5 minutes
    (start-up, final checkpoint and evaluation included) and its last line says how."""
    data, tok = make_tokenized(tmp_path, length=40, episodes=8)
    argv = hma_command("train", "--data", data[0], "--tokenizer", tok, "--out", tmp_path / "run", "--minutes", "2",
                       "--batch-size", "8", "--eval-windows", "16", "--no-progress")
    hogs: list[subprocess.Popen] = []

    def start_hogs() -> None:
        hogs.extend(subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2))

    timer = threading.Timer(30.0, start_hogs)
    started = time.monotonic()
    timer.start()
    try:
        done = subprocess.run(argv, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    finally:
        timer.cancel()
        for hog in hogs:
            hog.kill()
            hog.wait()
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert hogs, "the CPU hogs never started: the run ended within 30 s"
    assert took <= 150, f"a 2-minute run took {took:.0f} s"
    last = done.stdout.strip().splitlines()[-1]
    assert re.match(r"(stopped at the 2-minute deadline at step|re-planned to|planned) \d+", last), last
