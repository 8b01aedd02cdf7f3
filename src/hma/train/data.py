"""Training data: pre-tokenized datasets as windows, one embodiment per batch.

Every dataset must carry a token shard made by the run's tokenizer (checked, with its
weights' fingerprint, before any step); its episodes are split into training and held-out
ones (``hma.data.windows.split_episodes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from hma.config import EmbodimentSpec, TokenKind
from hma.data.mixture import MixtureSampler
from hma.data.store import open_datasets
from hma.data.windows import HOLDOUT, ActionNormalizer, WindowDataset, check_window_fits, frame_stride, split_episodes
from hma.errors import ConfigError, DataError, EmbodimentError


@dataclass
class TrainingData:
    train: list[WindowDataset]
    heldout: list[WindowDataset]  # empty datasets where nothing could be held out
    embodiments: dict[str, EmbodimentSpec]
    token_counts: np.ndarray | None  # (V,) training-token frequencies (discrete), the unigram baseline

    @property
    def sizes(self) -> list[int]:
        return [len(d) for d in self.train]


def load_training_data(paths: Sequence[str | Path], tokenizer, *, num_frames: int, frame_hz: float,
                       holdout: float = HOLDOUT, train_fraction: float = 1.0) -> TrainingData:
    """Open every dataset under ``paths`` with its token shard for ``tokenizer``.

    ``train_fraction`` keeps the first part of each dataset's training episodes (at least one);
    the held-out episodes stay the same whatever it is, so runs on less data score on the same clips.
    """
    from hma.tokenizer import open_token_shard

    if not 0 < train_fraction <= 1:
        raise ConfigError(f"train fraction {train_fraction!r} is invalid, expected a number in (0, 1]")
    train, heldout, specs = [], [], {}
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64) if tokenizer.kind == TokenKind.DISCRETE else None
    for store in open_datasets(paths):
        shard = open_token_shard(store, tokenizer)  # DataError if made by another tokenizer
        check_window_fits(store, num_frames, frame_hz)
        chunk = frame_stride(store.control_hz, frame_hz)
        normalizer = ActionNormalizer.from_store(store, chunk)
        train_ids, held_ids = split_episodes(store.num_episodes, holdout)
        train_ids = train_ids[: max(1, round(train_fraction * len(train_ids)))]
        state = ActionNormalizer.of_state(store, train_ids)
        spec = EmbodimentSpec(name=store.embodiment, action_dim=store.action_dim, chunk=chunk,
                              mean=normalizer.mean.tolist(), std=normalizer.std.tolist(),
                              action_names=store.action_names, control_hz=store.control_hz,
                              **({} if state is None else {"state_names": store.state_names, "state_mean": state.mean.tolist(),
                                                           "state_std": state.std.tolist()}))
        known = specs.get(spec.name)
        if known is not None and known.chunk_dim != spec.chunk_dim:
            raise EmbodimentError(
                f"{store.root}: embodiment {spec.name!r} has {spec.chunk_dim} action values per frame here "
                f"but {known.chunk_dim} in another dataset, expected the same"
            )
        if known is not None and known.state_dim and state is not None and known.state_names != spec.state_names:
            raise EmbodimentError(
                f"{store.root}: embodiment {spec.name!r} records a state of {spec.state_dim} values here "
                f"but {known.state_dim} in another dataset, expected the same state names"
            )
        specs.setdefault(spec.name, spec)
        # The state is normalized as the model will read it out: by its embodiment's statistics.
        state = specs[spec.name].state_normalizer if state is not None else None
        views = {"source": shard.array, "normalizer": normalizer, "state_normalizer": state}
        train.append(WindowDataset(store, num_frames, frame_hz, episodes=train_ids, **views))
        heldout.append(WindowDataset(store, num_frames, frame_hz, episodes=held_ids, **views))
        if counts is not None:
            rows = slice(0, int(store.episode_starts[train_ids[-1] + 1]))  # training episodes come first
            counts += np.bincount(np.asarray(shard.array[rows]).reshape(-1), minlength=len(counts))[: len(counts)]
    if not any(len(d) for d in train):
        raise DataError(f"no training window of {num_frames} frames fits in the datasets under {list(map(str, paths))}")
    return TrainingData(train=train, heldout=heldout, embodiments=specs, token_counts=counts)


def to_tensors(batch: dict, device: torch.device) -> dict:
    """A WindowDataset batch as tensors: token ids -> long, latents -> float32."""
    frames = torch.from_numpy(np.asarray(batch["frames"]))
    frames = frames.long() if not frames.dtype.is_floating_point else frames.float()
    out = {"frames": frames.to(device), "actions": torch.from_numpy(batch["actions"]).to(device),
           "embodiment": batch["embodiment"]}
    if "state" in batch:
        out["state"] = torch.from_numpy(batch["state"]).to(device)
    return out


def batches(data: TrainingData, sampler: MixtureSampler, device: torch.device) -> Iterator[dict[str, Tensor]]:
    for d, idx in sampler:
        yield to_tensors(data.train[d].get_batch(idx), device)
