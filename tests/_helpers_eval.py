"""A tiny trained run over tiny tokenized datasets, for the evaluation runner and experiment tests."""

from __future__ import annotations

from pathlib import Path

from _helpers_train import TINY, make_tokenized

from hma.train import TrainConfig, train

EMBODIMENTS = {"arm": 2, "cart": 3}


def train_run(out: Path, datasets: list[Path], tokenizer: Path, *, setting: str = "full", steps: int = 6) -> Path:
    """A 2-block model trained ``steps`` steps on ``datasets`` into ``out``."""
    train(TrainConfig(data=[str(d) for d in datasets], out=str(out), tokenizer=str(tokenizer), steps=steps,
                      batch_size=4, warmup=2, setting=setting, progress=False, eval_windows=4,
                      model_overrides={**TINY, "grid": (4, 4)}))
    return out


def make_run(tmp: Path, *, setting: str = "full", kind: str = "discrete", steps: int = 6) -> tuple[Path, list[Path], Path]:
    """(run folder, dataset folders, tokenizer folder) over fresh tiny datasets of :data:`EMBODIMENTS`."""
    datasets, tokenizer = make_tokenized(tmp, kind=kind, embodiments=EMBODIMENTS)
    return train_run(tmp / f"run_{setting}", datasets, tokenizer, setting=setting, steps=steps), datasets, tokenizer
