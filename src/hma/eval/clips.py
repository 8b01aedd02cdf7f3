"""Held-out clips of a dataset as the evaluation sees them: real frames with their
normalized action chunks, random action chunks drawn from the training episodes, and
frames to and from tokens in batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from hma.data.store import EpisodeStore
from hma.data.windows import WindowDataset
from hma.errors import DataError
from hma.eval import metrics as M


@dataclass
class Clips:
    frames: np.ndarray  # (B, L, H, W, 3) uint8 real frames
    actions: np.ndarray  # (B, L, k*A) normalized true actions
    episodes: list[int]


def heldout_clips(store: EpisodeStore, spec, *, frame_hz: float, length: int, held: Sequence[int]) -> Clips:
    """Non-overlapping clips of ``length`` frames from the held-out episodes ``held``."""
    ds = WindowDataset(store, length, frame_hz, episodes=held, normalizer=spec.normalizer)
    span = length * ds.chunk
    wanted = [s for e in held
              for s in range(int(store.episode_starts[e]), int(store.episode_starts[e + 1]) - span + 1, span)]
    if not wanted:
        longest = int(max(store.episode_starts[e + 1] - store.episode_starts[e] for e in held))
        raise DataError(
            f"{store.root}: no held-out episode fits a clip of {length} frames ({span} control steps); the longest "
            f"has {longest}, expected a shorter --horizon or --context"
        )
    batch = ds.get_batch(np.searchsorted(ds.starts, wanted))
    return Clips(frames=np.asarray(batch["frames"]), actions=batch["actions"], episodes=list(held))


def random_action_chunks(store: EpisodeStore, spec, train_ids: Sequence[int], shape: tuple[int, int],
                    generator: torch.Generator) -> Tensor:
    """Normalized random action chunks (B, L, k*A): control-step rows resampled from the training episodes."""
    b, length = shape
    rows = np.concatenate([np.arange(store.episode_starts[e], store.episode_starts[e + 1]) for e in train_ids])
    raw = M.sample_random_actions(np.asarray(store.actions)[rows], (b, length * spec.chunk), generator)  # (B, L*k, A)
    chunks = rearrange(raw, "b (l k) a -> b l (k a)", k=spec.chunk)  # (B, L, k*A)
    mean = torch.as_tensor(spec.mean, dtype=chunks.dtype, device=chunks.device)
    std = torch.as_tensor(spec.std, dtype=chunks.dtype, device=chunks.device).clamp_min(1e-6)
    return (chunks - mean) / std


def encode_clips(tokenizer, frames_blhw3: np.ndarray, device: torch.device) -> Tensor:
    b, length = frames_blhw3.shape[:2]
    flat = rearrange(np.ascontiguousarray(frames_blhw3), "b l h w c -> (b l) h w c")
    tokens = torch.cat([tokenizer.encode(flat[i : i + 256]).to(device) for i in range(0, len(flat), 256)])
    return tokens.reshape(b, length, *tokens.shape[1:])  # (B, L, h, w) or (B, L, C, h, w)


def decode_clips(tokenizer, tokens: Tensor) -> np.ndarray:
    b, length = tokens.shape[:2]
    flat = tokens.reshape(b * length, *tokens.shape[2:])
    frames = torch.cat([tokenizer.decode(flat[i : i + 256]).cpu() for i in range(0, len(flat), 256)])
    return frames.reshape(b, length, *frames.shape[1:]).numpy()  # (B, L, H, W, 3) uint8
