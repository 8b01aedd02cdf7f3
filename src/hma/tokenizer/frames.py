"""Frames of the training or held-out episodes of several datasets, for tokenizer work.

The split is :func:`hma.data.windows.split_episodes` (the last ~10% of each dataset's
episodes are held out), the same rule the world model uses, so tokenizer figures on
held-out frames are on frames no model saw.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from hma.data.store import EpisodeStore
from hma.data.windows import split_episodes
from hma.errors import DataError


def episode_rows(store: EpisodeStore, part: Literal["train", "heldout"]) -> np.ndarray:
    """Row indices (int64) of the frames of the training or held-out episodes of ``store``."""
    train, heldout = split_episodes(store.num_episodes)
    episodes = train if part == "train" else heldout
    s = store.episode_starts
    if not episodes:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(s[e], s[e + 1], dtype=np.int64) for e in episodes])


class FramePool:
    """Random batches of training frames, each dataset equally likely (so no embodiment is starved)."""

    def __init__(self, stores: list[EpisodeStore]) -> None:
        if not stores:
            raise DataError("no datasets given, expected at least one dataset folder")
        sizes = {tuple(s.image_size) for s in stores}
        if len(sizes) != 1:
            raise DataError(f"datasets have frame sizes {sorted(sizes)}, expected one size for one tokenizer")
        self.image_size: tuple[int, int] = sizes.pop()
        self.stores = stores
        self.rows = [episode_rows(s, "train") for s in stores]

    def sample(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """(B, H, W, 3) uint8 frames drawn uniformly over datasets, then over their training rows."""
        return self.sample_with_source(rng, batch_size)[0]

    def sample_with_source(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`sample`, plus the dataset index of each frame (B,)."""
        which = rng.integers(len(self.stores), size=batch_size)
        out = np.empty((batch_size, *self.image_size, 3), dtype=np.uint8)
        for d in np.unique(which):
            slots = np.flatnonzero(which == d)
            rows = np.sort(rng.choice(self.rows[d], size=len(slots)))  # sorted reads are kinder to the memmap
            out[slots] = self.stores[d].frames[rows]
        return out, which

    def backgrounds(self, *, frames: int = 256, seed: int = 0) -> np.ndarray:
        """(D, H, W, 3) uint8: per dataset, the per-pixel median of up to ``frames`` training frames.

        Where a robot moves, the median shows what lies behind it most of the time.
        """
        rng = np.random.default_rng(seed)
        out = []
        for store, rows in zip(self.stores, self.rows):
            take = np.sort(rng.choice(rows, size=min(frames, len(rows)), replace=False))
            out.append(np.median(np.asarray(store.frames[take]), axis=0).astype(np.uint8))
        return np.stack(out)

    def fixed(self, n: int, *, seed: int = 0) -> np.ndarray:
        """A reproducible set of ``n`` training frames (for sample grids and the latent scale)."""
        return self.sample(np.random.default_rng(seed), n)
