"""A tiny trained run over tiny tokenized datasets, for the evaluation runner and experiment tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from _helpers_train import TINY, make_tokenized

from hma.data.sim.branches import BRANCHES_DIR
from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter
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


def add_branches(dataset, *, steps=(2, 5, 8), draws: int = 3) -> None:
    """Counterfactual branches of the last episode of a moving-square dataset: the square follows other actions."""
    store = EpisodeStore(dataset)
    e = store.num_episodes - 1
    ep = store.episode(e)
    rng = np.random.default_rng(7)
    branches, episodes = [], []
    for step in steps:
        ys, xs = np.nonzero(ep["frames"][step, :, :, 0])
        for d in range(draws):
            pos = np.array([xs.min(), ys.min()])
            n = len(ep["actions"]) - step
            actions = rng.integers(-2, 3, size=(n, store.action_dim)).astype(np.float32)
            frames = np.zeros((n, 16, 16, 3), dtype=np.uint8)
            for t in range(n):
                frames[t, pos[1] : pos[1] + 4, pos[0] : pos[0] + 4] = 255
                pos = np.clip(pos + actions[t, :2].astype(int), 0, 12)
            branches.append({"episode": e, "step": step, "policy": "random", "draw": d})
            episodes.append((frames, actions))
    info = DatasetInfo(embodiment=store.embodiment, simulator="synthetic", action_names=store.action_names,
                       control_hz=store.control_hz, image_size=store.image_size, extra={"branches": branches})
    with StoreWriter(dataset / BRANCHES_DIR, info) as w:
        for frames, actions in episodes:
            w.add_episode(frames, actions)
