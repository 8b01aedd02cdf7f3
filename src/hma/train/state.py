"""What a training run needs to continue exactly, and the budget that says when it stops.

:class:`TrainState` holds the step, the optimizer, the warmup + cosine learning-rate
schedule, an optional EMA of the weights and every random generator the run draws from;
:meth:`TrainState.files` turns it into safetensors tensors plus JSON (no pickles) and
:meth:`TrainState.restore` reads them back. :class:`Budget` turns ``--steps`` or
``--minutes`` into a number of steps. Every trainer of hma (world model, tokenizer,
behaviour-cloning policy, success classifier) runs on these through :func:`hma.train.fit.fit`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from hma.errors import CheckpointError, ConfigError, TrainingError
from hma.train.optim import Ema, WarmupCosine

UNPLANNED = 10**9  # a timed run's schedule length until it has measured its speed


def _contiguous(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in sd.items()}


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (safetensors) and the rest (JSON)."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return _contiguous(tensors), {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


class TrainState:
    """The model's optimizer, LR schedule, EMA, random generators and step, saved and restored together.

    ``floor=1.0`` with ``warmup=0`` is a constant learning rate. ``generators`` are the
    torch generators the run draws from (its data order, masks, noise); ``numpy_rngs``
    the numpy ones. The default torch generator is saved too (dropout and friends).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, warmup: int = 0,
                 total_steps: int | None = None, floor: float = 0.1, ema: float | None = None,
                 generators: dict[str, torch.Generator] | None = None,
                 numpy_rngs: dict[str, np.random.Generator] | None = None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.schedule = WarmupCosine(warmup, total_steps or UNPLANNED, floor)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule)
        self.ema = Ema(model, ema) if ema else None
        self.generators = dict(generators or {})
        self.numpy_rngs = dict(numpy_rngs or {})
        self.step = 0
        self.planned = total_steps is not None  # the schedule's length is final
        self.seconds = 0.0  # wall-clock seconds trained, over every process of the run (a timed run's deadline)

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def update(self, loss: Tensor, *, grad_clip: float | None = None) -> float | None:
        """One optimizer step on ``loss``; returns the gradient norm before clipping (None without clipping)."""
        loss.backward()
        grad_norm = None
        if grad_clip is not None:
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return grad_norm

    def plan(self, total_steps: int) -> None:
        self.schedule.total_steps = total_steps
        self.planned = True

    def weights(self) -> dict[str, Tensor]:
        """The weights a checkpoint publishes: the EMA when there is one, else the model's."""
        return self.ema.shadow if self.ema is not None else self.model.state_dict()

    def random_states(self, rank: int = 0) -> dict[str, Tensor]:
        """Every torch generator's state, keyed ``name.rank`` (one process of ``torchrun`` each)."""
        states = {f"{name}.{rank}": g.get_state() for name, g in self.generators.items()}
        states[f"torch.{rank}"] = torch.get_rng_state()
        return states

    def files(self, random_states: dict[str, Tensor] | None = None) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
        """(safetensors files by name, the JSON state). ``random_states``: all ranks' (default: this process's)."""
        opt_tensors, opt_meta = optimizer_to_files(self.optimizer)
        tensors = {"optimizer": opt_tensors, "rng": _contiguous(random_states or self.random_states())}
        if self.ema is not None:
            tensors["ema"] = _contiguous(self.ema.shadow)
            tensors["model_raw"] = _contiguous(self.model.state_dict())  # the un-averaged weights
        meta = {"step": self.step, "total_steps": self.schedule.total_steps, "planned": self.planned,
                "seconds": round(self.seconds, 3),
                "scheduler": self.scheduler.state_dict(), "optimizer": opt_meta,
                "numpy_rngs": {name: rng.bit_generator.state for name, rng in self.numpy_rngs.items()}}
        return tensors, meta

    def restore(self, tensors: Callable[[str], dict[str, Tensor]], meta: dict[str, Any], *, rank: int = 0,
                where: str = "training state") -> None:
        """Continue from :meth:`files`' output; ``tensors(name)`` reads one safetensors file."""
        try:
            self.step = int(meta["step"])
            self.schedule.total_steps = int(meta["total_steps"])
            self.planned = bool(meta.get("planned", True))
            self.seconds = float(meta.get("seconds", 0.0))  # checkpoints of earlier releases lack it
            optimizer_from_files(self.optimizer, tensors("optimizer"), meta["optimizer"])
            self.scheduler.load_state_dict(meta["scheduler"])
            for name, rng in self.numpy_rngs.items():
                rng.bit_generator.state = meta["numpy_rngs"][name]
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{where} cannot be restored ({type(e).__name__}: {e}), expected the files "
                                  "hma's trainer writes") from None
        states = tensors("rng")
        try:
            for name, g in self.generators.items():
                g.set_state(states[f"{name}.{rank}"])
            torch.set_rng_state(states[f"torch.{rank}"])
        except (KeyError, RuntimeError) as e:
            raise CheckpointError(f"{where}: random state {e} is missing or damaged") from None
        if self.ema is not None:
            device = next(self.model.parameters()).device
            self.ema.shadow = {k: v.to(device) for k, v in tensors("ema").items()}


class Budget:
    """How long a run trains: ``steps`` optimizer steps, or as many as fit in ``minutes``.

    A timed run plans its length once it knows its speed: the first steps pay for
    allocation and warm-up, so speed is measured on the 15 steps after the 5th and only the
    time still left is divided by it. The machine can speed up or slow down after that (a
    job starts or ends beside it), so after every tenth of the steps still planned (at least
    40) the length is planned again on the speed since the last plan, moving the end of the
    cosine schedule with it. Should the time run out before the planned step all the same,
    the run stops at the deadline, its schedule cut at that step. :meth:`summary` says which
    happened. The seconds trained are kept in the :class:`TrainState`, so a resumed run's
    deadline counts those of the processes before it. ``agree`` makes all ranks of a
    distributed run take one length (e.g. the minimum), and stop at the deadline together.
    """

    WARM, PROBE = 5, 20
    REPLANS = 10  # a timed run re-plans after every 1/REPLANS of the steps it still has planned

    def __init__(self, *, steps: int | None = None, minutes: float | None = None, stop_at: int | None = None,
                 agree: Callable[[int], int] | None = None) -> None:
        if (steps is None) == (minutes is None):
            raise ConfigError("give exactly one training budget: --steps N or --minutes M")
        if steps is not None and steps < 1:
            raise ConfigError(f"--steps {steps} is invalid, expected a positive number of steps")
        if minutes is not None and not minutes > 0:
            raise ConfigError(f"--minutes {minutes} is invalid, expected a positive duration")
        self.steps, self.minutes, self.stop_at = steps, minutes, stop_at
        self.agree = agree or (lambda n: n)
        self._started = 0.0
        self._first = 0
        self._mark = (0.0, 0)  # (time, step) the speed is measured from
        self._replan_at: int | None = None
        self._first_plan: int | None = None  # a timed run's first planned length
        self._cut: tuple[int, int] | None = None  # (step, planned length) when the deadline stopped the run
        self._state: TrainState | None = None

    def scaled(self, factor: float) -> Budget:
        """This budget times ``factor`` (steps rounded, at least one)."""
        if self.steps is not None:
            return Budget(steps=max(1, round(self.steps * factor)))
        return Budget(minutes=self.minutes * factor)

    def describe(self) -> str:
        if self.steps is not None:
            return f"{self.steps} optimizer steps per run (same steps)"
        return f"{self.minutes:g} minutes of wall-clock training per run (same wall time)"

    def start(self, state: TrainState) -> None:
        """Called once before the first step (of this process: a resumed run keeps its plan and its deadline)."""
        if self.steps is not None and not state.planned:
            state.plan(self.steps)
        now = time.perf_counter()
        self._started = now - state.seconds
        self._first, self._mark, self._state = state.step, (now, state.step), state
        if self.minutes is not None and state.planned:
            self._first_plan = state.schedule.total_steps
            self._next_replan(state)

    def stop(self, state: TrainState) -> int:
        """The step to stop at: the planned length, or ``stop_at`` (a checkpoint there, schedule unchanged)."""
        total = state.schedule.total_steps
        return total if self.stop_at is None else min(total, self.stop_at)

    def observe(self, state: TrainState) -> bool:
        """After each step: plan, re-plan or cut a timed run's length at the deadline; True when the length changed."""
        now = time.perf_counter()
        state.seconds = now - self._started
        if self.minutes is None:
            return False
        if not state.planned:
            done = state.step - self._first
            if done == self.WARM:
                self._mark = (now, state.step)
            if done != self.PROBE:
                return False
            self._plan(state, now)
            self._first_plan = state.schedule.total_steps
            self._next_replan(state)
            return True
        if self._deadline(state, now):
            return True
        if state.step != self._replan_at:
            return False
        before = state.schedule.total_steps
        self._plan(state, now)
        self._next_replan(state)
        return state.schedule.total_steps != before

    def _plan(self, state: TrainState, now: float) -> None:
        """The length at which the time left runs out at the speed since the last plan."""
        at, step = self._mark
        per_step = (now - at) / max(1, state.step - step)
        left = self.minutes * 60 - (now - self._started)
        state.plan(max(state.step + 1, self.agree(int(state.step + left / per_step))))
        self._mark = (now, state.step)

    def _next_replan(self, state: TrainState) -> None:
        self._replan_at = state.step + max(2 * self.PROBE, (state.schedule.total_steps - state.step) // self.REPLANS)

    def _deadline(self, state: TrainState, now: float) -> bool:
        """Out of time before the planned step: the schedule ends here (on every rank, if any is out of time)."""
        planned = state.schedule.total_steps
        if state.step >= planned:
            return False
        over = now - self._started >= self.minutes * 60
        if self.agree(state.step if over else planned) >= planned:
            return False
        self._cut = (state.step, planned)
        state.plan(state.step)
        return True

    def summary(self) -> str | None:
        """How a timed run ended, for its last line: planned, re-planned or stopped at the deadline (None for steps)."""
        if self.minutes is None or self._first_plan is None or self._state is None:
            return None
        took = f"{self._state.seconds / 60:.1f} min"
        if self._cut is not None:
            step, planned = self._cut
            return f"stopped at the {self.minutes:g}-minute deadline at step {step} of {planned} planned ({took})"
        total = self._state.schedule.total_steps
        if total != self._first_plan:
            return (f"re-planned to {total} steps (first planned {self._first_plan}) from the measured speed "
                    f"to end within {self.minutes:g} minutes ({took})")
        return f"planned {total} steps from the measured speed to fill {self.minutes:g} minutes ({took})"

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._started


def check_finite(loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise TrainingError(f"training diverged: loss is {loss} at step {step}, expected finite (lower --lr)")
