"""The one training loop of hma: world model, tokenizer, behaviour-cloning policy and success classifier.

:func:`fit` steps a :class:`~hma.train.state.TrainState` until its
:class:`~hma.train.state.Budget` is spent: loss, backward, clipping, optimizer, schedule
and EMA; window means of the loss's metrics to TensorBoard (and a JSON-lines file) every
``log_every`` steps; the trainer's own periodic work (samples, held-out metrics) as hooks;
a checkpoint every N steps or minutes and at the end. What a trainer adds is its loss and
its checkpoint's contents.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import Tensor

from hma.progress import bar as progress_bar
from hma.train.state import Budget, TrainState, check_finite

TB_DIR = "tb"


class TrainLog:
    """TensorBoard scalars under ``FOLDER/tb`` and, with ``jsonl``, one JSON line per log step."""

    def __init__(self, folder: str | Path, *, jsonl: str | Path | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(folder) / TB_DIR))
        self.jsonl = Path(jsonl) if jsonl is not None else None

    def write(self, step: int, record: dict[str, Any], prefix: str = "train") -> None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step":
                self.writer.add_scalar(f"{prefix}/{key}", value, step)
        if self.jsonl is not None:
            with open(self.jsonl, "a") as f:
                f.write(json.dumps({"step": step, **record}) + "\n")

    def close(self) -> None:
        self.writer.close()


def fit(state: TrainState, loss_fn: Callable[[], tuple[Tensor, dict[str, float]]], budget: Budget, *,
        grad_clip: float | None = None, autocast: contextlib.AbstractContextManager | None = None,
        log: TrainLog | None = None, log_every: int = 10, on_log: Sequence[Callable[[int, dict], None]] = (),
        postfix: Callable[[dict, Any], dict] | None = None, hooks: Sequence[tuple[int, Callable[[int], None]]] = (),
        save: Callable[[], None] | None = None, save_every: int | None = None, save_minutes: float | None = None,
        progress: bool = False, desc: str | None = None) -> dict[str, float]:
    """Train until ``budget`` says stop; returns the last logged record.

    ``loss_fn()`` draws a batch and returns (loss, metrics of that step); metrics include
    ``"loss"``. ``on_log`` callbacks may add entries to a record before it is written;
    ``postfix(record, bar)`` gives the progress bar's fields. ``hooks`` are (every N steps,
    fn(step)), not run at the last step. ``save`` writes a checkpoint: every ``save_every``
    steps or ``save_minutes`` minutes, and once at the end.
    """
    budget.start(state)
    stop = budget.stop(state)
    bar = progress_bar(total=stop if state.planned else None, initial=state.step, show=progress, desc=desc,
                       unit="step", dynamic_ncols=True)
    window: dict[str, list[float]] = defaultdict(list)
    record: dict[str, float] = {}
    first, last_loss, saved_at = state.step, float("nan"), time.monotonic()
    while state.step < stop:
        with autocast or contextlib.nullcontext():
            loss, metrics = loss_fn()
        grad_norm = state.update(loss, grad_clip=grad_clip)
        step = state.step
        for key, value in metrics.items():
            window[key].append(float(value))
        last_loss = float(metrics["loss"])
        if budget.observe(state):
            stop = budget.stop(state)
            bar.total = state.schedule.total_steps
        if step % log_every == 0 or step == stop:
            record = {key: sum(values) / len(values) for key, values in window.items()}
            record["lr"] = state.lr
            if grad_norm is not None:
                record["grad_norm"] = grad_norm
            for callback in on_log:
                callback(step, record)
            if log is not None:
                log.write(step, record)
            bar.set_postfix(postfix(record, bar) if postfix else {"loss": f"{record['loss']:.4g}"})
            window.clear()
        if step < stop:
            for every, hook in hooks:
                if every and step % every == 0:
                    hook(step)
            due = (save_every and step % save_every == 0) or (
                save_minutes is not None and time.monotonic() - saved_at >= save_minutes * 60)
            if save is not None and due:
                save()
                saved_at = time.monotonic()
        bar.update(1)
    bar.close()
    if state.step > first:
        check_finite(last_loss, state.step)
    if save is not None:
        save()
    return record
