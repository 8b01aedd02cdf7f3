"""Heterogeneous batches: each batch comes from one dataset, datasets drawn by weight.

HMA draws every batch from a single dataset (so a batch shares one embodiment, one stem
and one action size) with probability proportional to (n_i / N)^(1/tau): tau = 1 samples
in proportion to size, larger tau flattens toward uniform so small robots are not
drowned out (the paper trains with tau = 3).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from hma.errors import ConfigError


def mixture_weights(sizes: Sequence[int], tau: float = 3.0) -> np.ndarray:
    """Normalized dataset weights proportional to (n_i / N)^(1 / tau)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if tau <= 0:
        raise ConfigError(f"mixture temperature tau={tau} must be positive")
    if sizes.ndim != 1 or len(sizes) == 0 or (sizes < 0).any() or sizes.sum() == 0:
        raise ConfigError(f"dataset sizes {sizes.tolist()} must be non-negative with at least one window")
    w = (sizes / sizes.sum()) ** (1.0 / tau)
    w[sizes == 0] = 0.0
    return w / w.sum()


class MixtureSampler:
    """Infinite, deterministic stream of ``(dataset_index, window_indices)`` batches.

    Every rank draws the same global sequence of (dataset, windows) from ``seed`` and
    keeps the batches whose position is congruent to its rank, so ranks see disjoint
    batches and a restart at ``start_batch`` reproduces the stream exactly.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        tau: float = 3.0,
        seed: int = 0,
        *,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size {batch_size} must be at least 1")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside world size {world_size}")
        self.sizes = [int(s) for s in sizes]
        self.weights = mixture_weights(self.sizes, tau)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.position = start_batch  # batches this rank has yielded: the data position to checkpoint

    def _global_batch(self, g: int) -> tuple[int, np.ndarray]:
        # One generator per global batch index: any batch is reproducible on its own,
        # which makes resuming and rank-splitting trivial.
        rng = np.random.default_rng([self.seed, g])
        d = int(rng.choice(len(self.sizes), p=self.weights))
        return d, rng.integers(0, self.sizes[d], size=self.batch_size)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        while True:
            g = self.position * self.world_size + self.rank
            self.position += 1
            yield self._global_batch(g)
