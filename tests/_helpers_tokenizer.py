"""Tiny procedural image datasets and tokenizers for the tokenizer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter
from hma.tokenizer.config import TokenizerConfig
from hma.tokenizer.modeling import ConvAutoencoder
from hma.train.tokenizer import TrainOptions, train_tokenizer
from _helpers_threads import one_thread


def make_image_store(root: Path, *, embodiment: str = "toy", episodes: int = 4, length: int = 16,
                     image_size: int = 32, seed: int = 0) -> EpisodeStore:
    """Frames with a smooth per-episode background and a coloured square that moves smoothly."""
    rng = np.random.default_rng(seed)
    info = DatasetInfo(embodiment=embodiment, simulator="synthetic", action_names=["dx", "dy"],
                       control_hz=10.0, image_size=(image_size, image_size))
    yy, xx = np.mgrid[0:image_size, 0:image_size] / image_size
    w = StoreWriter(root, info)
    for _ in range(episodes):
        base = rng.uniform(40, 200, size=3)
        background = base + 50 * (xx[..., None] - 0.5) + 30 * (yy[..., None] - 0.5)  # (H, W, 3)
        colour = rng.uniform(0, 255, size=3)
        pos = rng.uniform(2, image_size - 10, size=2)
        actions = rng.normal(size=(length, 2)).astype(np.float32)
        frames = np.empty((length, image_size, image_size, 3), dtype=np.uint8)
        for t in range(length):
            pos = np.clip(pos + actions[t], 0, image_size - 8)
            img = background.copy()
            x, y = pos.astype(int)
            img[y : y + 8, x : x + 8] = colour
            frames[t] = np.clip(img, 0, 255).astype(np.uint8)
        w.add_episode(frames, actions)
    return w.finalize()


def tiny_config(kind: str, *, name: str = "tiny", image_size: int = 32, **changes) -> TokenizerConfig:
    """A 4x-downsampling tokenizer small enough to train in seconds."""
    return TokenizerConfig(kind=kind, name=name, image_size=(image_size, image_size), downsample=4,
                           channels=(16, 32), num_res_blocks=1, vocab_size=1024, latent_channels=4, **changes)




def train_tiny(data: list[Path], out: Path, kind: str, *, steps: int = 40, seed: int = 0, checkpoint_minutes: float = 2.0):
    options = TrainOptions(steps=steps, batch_size=16, lr=3e-3, warmup_steps=5, seed=seed, sample_every=1000, log_every=10,
                           checkpoint_minutes=checkpoint_minutes, scale_frames=64)
    with one_thread():
        return train_tokenizer(data, out, tiny_config(kind, name=out.name), options, progress=False)


def random_model(kind: str) -> ConvAutoencoder:
    return ConvAutoencoder(tiny_config(kind))
