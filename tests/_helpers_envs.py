"""A tiny world-model run (random weights) and a procedural dataset for the sim/apps tests.

The model and tokenizer are the real hma classes at toy sizes, so every code path of the
env is exercised; only the weights are untrained (a few ms per generated frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hma.config import EmbodimentSpec, preset
from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter
from hma.data.windows import HOLDOUT
from hma.model import WorldModel
from hma.run import LoadedRun
from hma.tokenizer.config import TokenizerConfig
from hma.tokenizer.modeling import ConvAutoencoder
from hma.tokenizer.conv import ConvTokenizer

IMAGE = 32
EMBODIMENT = "toy"
CHUNK = 2  # control steps per model frame: 20 Hz control, 10 Hz frames


def make_store(root: Path, *, episodes: int = 6, length: int = 24, seed: int = 0,
               embodiment: str = EMBODIMENT) -> EpisodeStore:
    """A square that the 2-D actions push around; success when it is in the right half; the
    state is the square's position."""
    rng = np.random.default_rng(seed)
    info = DatasetInfo(embodiment=embodiment, simulator="procedural", action_names=["dx", "dy"],
                       control_hz=20.0, image_size=(IMAGE, IMAGE), task="push the square right", state_names=["x", "y"])
    writer = StoreWriter(root, info)
    for _ in range(episodes):
        pos = rng.uniform(4, IMAGE - 12, size=2)
        actions = rng.uniform(-2, 2, size=(length, 2)).astype(np.float32)
        frames = np.zeros((length, IMAGE, IMAGE, 3), np.uint8)
        success = np.zeros(length, bool)
        state = np.zeros((length, 2), np.float32)
        for t in range(length):
            x, y = pos.astype(int)
            frames[t, y : y + 8, x : x + 8] = (230, 60, 40)
            success[t] = x > IMAGE // 2
            state[t] = pos
            pos = np.clip(pos + actions[t], 0, IMAGE - 8)
        writer.add_episode(frames, actions, success, state=state)
    return writer.finalize()


def make_run(store: EpisodeStore, *, seed: int = 0, responsive: bool = True, chunk: int = CHUNK,
             action_names: tuple[str, ...] = ("dx", "dy")) -> LoadedRun:
    """What ``hma.load`` returns, holding an untrained tiny model (not saved to disk);
    ``chunk`` control steps per frame (1: the env's Box is (2,))."""
    torch.manual_seed(seed)
    tok = ConvTokenizer(ConvAutoencoder(TokenizerConfig(kind="discrete", name="toy", image_size=(IMAGE, IMAGE),
                                                        downsample=8, channels=(8, 16, 16), num_res_blocks=1,
                                                        vocab_size=256)))
    stats = store.action_stats
    state = {} if store.state is None else {"state_names": store.state_names, "state_mean": store.state.mean(0).tolist(),
                                            "state_std": store.state.std(0).tolist()}
    spec = EmbodimentSpec(name=EMBODIMENT, action_dim=2, chunk=chunk, mean=np.tile(stats["mean"], chunk).tolist(),
                          std=np.tile(stats["std"], chunk).tolist(), action_names=list(action_names),
                          control_hz=10.0 * chunk, **state)
    config = preset("tiny", num_blocks=2, width=32, num_heads=2, grid=tok.grid, num_frames=4, vocab_size=tok.vocab_size,
                    frame_hz=10.0, embodiments={EMBODIMENT: spec})
    model = WorldModel(config).eval()
    if responsive:
        # adaLN-Zero starts every block unmodulated, so an untrained model ignores actions;
        # random modulation weights make its frames depend on them, as a trained model's do.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "adaln" in name or name.startswith("stems."):
                    p.normal_(0.0, 0.5)
    return LoadedRun(model=model, tokenizer=tok, embodiments=config.embodiments, path=store.root.parent / "toy_run",
                     config={"model": config.to_json(), "train": {"data": [str(store.root)], "holdout": HOLDOUT}})


class ToySim:
    """The ground truth of :func:`make_store`'s world, with RealSimulator's interface:
    the expert pushes the square right, success is the square in the right half."""

    chunk = CHUNK

    def __init__(self) -> None:
        self.low, self.high = np.full(2, -2.0), np.full(2, 2.0)
        self.pos = np.zeros(2)

    def _frame(self) -> np.ndarray:
        frame = np.zeros((IMAGE, IMAGE, 3), np.uint8)
        x, y = self.pos.astype(int)
        frame[y : y + 8, x : x + 8] = (230, 60, 40)
        return frame

    def reset(self, seed: int) -> np.ndarray:
        self.pos = np.random.default_rng(seed).uniform(4, IMAGE // 2 - 8, size=2)
        return self._frame()

    def state(self) -> np.ndarray:
        return self.pos.astype(np.float32)

    def step(self, chunk: np.ndarray):
        from hma.apps.experts import Transition

        chunk = np.clip(np.asarray(chunk, np.float64).reshape(CHUNK, 2), self.low, self.high)
        success = False
        for action in chunk:
            self.pos = np.clip(self.pos + action, 0, IMAGE - 8)
            success = success or self.pos[0] > IMAGE // 2
        return Transition(self._frame(), bool(success), chunk.astype(np.float32))

    def expert_step(self, noise: float, rng: np.random.Generator):
        expert = np.tile([2.0, 0.0], (CHUNK, 1))
        return self.step(expert + noise * 2.0 * rng.standard_normal((CHUNK, 2)))

    def close(self) -> None:
        pass

    def __enter__(self) -> "ToySim":
        return self

    def __exit__(self, *exc) -> None:
        self.close()




class RuleClassifier:
    """Stands in for a trained SuccessClassifier: success = red square in the right half."""

    def episode_success(self, frames: np.ndarray) -> bool:
        red = np.asarray(frames)[..., 0] > 128  # (T, H, W)
        return bool(red[:, :, IMAGE // 2 + 1 :].any(axis=(1, 2)).any())


def make_trained_run(store: EpisodeStore, root: Path, *, steps: int = 3):
    """A real run folder: tokenizer and world model trained for a few steps on ``store``,
    opened with ``hma.load`` (exercises the run format end to end)."""
    from hma.tokenizer.shards import tokenize_dataset
    from hma.train.tokenizer import TrainOptions, train_tokenizer
    from hma.run import load
    from hma.train.loop import TrainConfig, train

    config = TokenizerConfig(kind="discrete", name="toy", image_size=(IMAGE, IMAGE), downsample=8,
                             channels=(8, 16, 16), num_res_blocks=1, vocab_size=256)
    tokenizer = train_tokenizer([store.root], root / "tok", config,
                                TrainOptions(steps=steps, batch_size=8, warmup_steps=1, sample_every=10 ** 6,
                                             log_every=10 ** 6, scale_frames=16), progress=False)
    tokenize_dataset(store, tokenizer)
    train(TrainConfig(data=[str(store.root)], out=str(root / "run"), tokenizer=str(root / "tok"), preset="tiny",
                      steps=steps, batch_size=2, warmup=1, num_frames=4, frame_hz=10.0, checkpoint_every=10 ** 6,
                      eval_windows=2, progress=False))
    return load(root / "run")
