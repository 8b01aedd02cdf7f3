"""Small synthetic datasets for tests that need a store but not a simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter


def make_store(
    root: Path,
    *,
    embodiment: str = "toy",
    episodes: int = 3,
    length: int = 20,
    action_dim: int = 2,
    control_hz: float = 10.0,
    image_size: int = 16,
    success: bool = False,
    seed: int = 0,
) -> EpisodeStore:
    """A dataset whose frame t holds a square moved by the cumulative actions."""
    rng = np.random.default_rng(seed)
    info = DatasetInfo(
        embodiment=embodiment, simulator="synthetic", action_names=[f"a{i}" for i in range(action_dim)],
        control_hz=control_hz, image_size=(image_size, image_size),
    )
    w = StoreWriter(root, info)
    for _ in range(episodes):
        actions = rng.normal(size=(length, action_dim)).astype(np.float32)
        pos = np.cumsum(actions[:, :2] if action_dim >= 2 else np.repeat(actions, 2, 1), axis=0)
        frames = np.zeros((length, image_size, image_size, 3), dtype=np.uint8)
        for t, (x, y) in enumerate(pos):
            cx, cy = int(x) % (image_size - 3), int(y) % (image_size - 3)
            frames[t, cy : cy + 3, cx : cx + 3] = 255
        frames[..., 2] = 40
        w.add_episode(frames, actions, np.arange(length) > length // 2 if success else None)
    return w.finalize()
