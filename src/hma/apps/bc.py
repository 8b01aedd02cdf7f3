"""A small image-based behaviour-cloning policy: :func:`train_bc` clones one from episodes,
:func:`episode_successes` scores it in the real simulator. The synthetic-data experiment built
on them is :mod:`hma.experiments.synth_bc`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from hma.apps.bc_policy import BCPolicy
from hma.apps.experts import RealSimulator
from hma.data.store import EpisodeStore
from hma.errors import ConfigError, DataError
from hma.model.cnn import SmallCNN
from hma.train.fit import fit
from hma.train.state import Budget, TrainState

@dataclass
class _Samples:
    frames: np.ndarray  # (N, H, W, 3)
    chunks: np.ndarray  # (N, k*A)
    per_source: list[int]  # samples of each source, in order


def _samples(sources: Sequence[tuple[EpisodeStore, Sequence[int]]], chunk: int) -> _Samples:
    """Every frame at a chunk boundary (the model's frame rate) and the chunk taken from it."""
    frames, chunks, per_source = [], [], []
    for store, episodes in sources:
        per_source.append(0)
        for e in episodes:
            ep = store.episode(e)
            n = (len(ep["actions"]) // chunk) * chunk
            frames.append(np.asarray(ep["frames"][:n:chunk]))
            chunks.append(np.asarray(ep["actions"][:n]).reshape(n // chunk, -1))
            per_source[-1] += n // chunk
    if not frames:
        raise DataError("behaviour cloning got no episodes, expected at least one")
    return _Samples(np.concatenate(frames), np.concatenate(chunks).astype(np.float32), per_source)


def random_shift(frames: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Each frame (B, H, W, 3) moved by up to ``pad`` pixels in x and y, the border repeated
    into the gap (the random-shift augmentation of image-based RL and BC); returns floats."""
    if pad == 0:
        return frames
    b, h, w, _ = frames.shape
    padded = F.pad(rearrange(frames.float(), "b h w c -> b c h w"), (pad, pad, pad, pad), mode="replicate")
    padded = rearrange(padded, "b c h w -> b h w c")
    dy, dx = (torch.randint(0, 2 * pad + 1, (b, 1), generator=gen) for _ in range(2))
    rows, cols = dy + torch.arange(h), dx + torch.arange(w)  # (B, H), (B, W)
    return padded[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def train_bc(sources: Sequence[tuple[EpisodeStore, Sequence[int]]], *, chunk: int, steps: int = 500, batch_size: int = 64,
             lr: float = 2e-3, width: int = 16, grid: int = 1, shift: int = 0, seed: int = 0, name: str = "bc",
             first_share: float | None = None) -> BCPolicy:
    """Regress the normalized action chunk from the frame (MSE) on the given (store, episodes).

    ``grid``: the CNN's pooled feature map (:class:`SmallCNN`; 1 keeps no layout).
    ``shift``: random shifts of up to this many pixels on every training frame.
    ``first_share``: the fraction of every batch drawn from the first source (the real
    episodes, so that added ones do not thin out their passes); None draws uniformly over
    all samples."""
    if first_share is not None and not 0 < first_share <= 1:
        raise ConfigError(f"first_share={first_share} is invalid, expected a number in (0, 1]")
    if not isinstance(shift, int) or shift < 0:
        raise ConfigError(f"shift={shift!r} is invalid, expected an integer number of pixels >= 0")
    data = _samples(sources, chunk)
    num_first = data.per_source[0]
    mean, std = data.chunks.mean(0), np.maximum(data.chunks.std(0), 1e-6)
    targets = torch.as_tensor((data.chunks - mean) / std)  # (N, k*A)
    frames = torch.as_tensor(data.frames)  # (N, H, W, 3)
    with torch.random.fork_rng():  # seeded weight init without touching the caller's global RNG
        torch.manual_seed(seed)
        net = SmallCNN(targets.shape[1], width=width, grid=grid)
    gen = torch.Generator().manual_seed(seed)
    state = TrainState(net, torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4), floor=1.0)  # constant LR

    def loss_fn() -> tuple[torch.Tensor, dict[str, float]]:
        if first_share is None or num_first == len(frames):
            idx = torch.randint(0, len(frames), (batch_size,), generator=gen)
        else:
            n = round(first_share * batch_size)
            idx = torch.cat([torch.randint(0, num_first, (n,), generator=gen),
                             torch.randint(num_first, len(frames), (batch_size - n,), generator=gen)])
        loss = F.mse_loss(net(random_shift(frames[idx], shift, gen)), targets[idx])
        return loss, {"loss": loss.item()}

    net.train()
    fit(state, loss_fn, Budget(steps=steps))
    return BCPolicy(net, chunk=chunk, action_dim=targets.shape[1] // chunk, mean=mean, std=std,
                    image_size=data.frames.shape[1:3], name=name)


def episode_successes(policy: BCPolicy, sim: RealSimulator, *, episodes: int, steps: int,
                      seed: int = 10_000) -> list[bool]:
    """Whether the real simulator flags success in each episode (fresh initial states; episode
    e starts from the same state for every policy, so two policies' lists pair up)."""
    wins = []
    for e in range(episodes):
        frame, success = sim.reset(seed + e), False
        policy.reset(seed=e)
        for _ in range(steps):
            step = sim.step(policy.act(frame))
            frame, success = step.frame, success or step.success
            if success:
                break
        wins.append(bool(success))
    return wins
