"""Training windows: T frames at a common frame rate, with their action chunks.

Datasets are recorded at their robot's control rate; the world model sees frames at one
common rate for all embodiments (HMA resamples everything to a shared rate, sec. 3). An
embodiment controlled k times faster than the frame rate contributes every k-th frame,
and the k actions taken between two sampled frames become one action chunk, so its stem
input is ``action_dim * k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hma.data.store import EpisodeStore
from hma.errors import DataError

DEFAULT_FRAME_HZ = 10.0
_STD_FLOOR = 1e-6


def frame_stride(control_hz: float, frame_hz: float) -> int:
    """Control steps per sampled frame; the control rate must be a multiple of the frame rate."""
    if frame_hz <= 0 or control_hz <= 0:
        raise DataError(f"frame rate {frame_hz} Hz and control rate {control_hz} Hz must both be positive")
    k = control_hz / frame_hz
    if abs(k - round(k)) > 1e-6 or round(k) < 1:
        raise DataError(
            f"control rate {control_hz} Hz is not an integer multiple of the frame rate {frame_hz} Hz"
        )
    return int(round(k))


# The fraction of each dataset's episodes held out from training, unless a run says otherwise.
HOLDOUT = 0.1


def split_episodes(num_episodes: int, holdout: float = HOLDOUT) -> tuple[list[int], list[int]]:
    """Deterministic train/held-out split: the last max(1, round(holdout * E)) episodes are held out.

    A dataset with a single episode is all training data (nothing can be held out).
    """
    if num_episodes <= 1:
        return list(range(num_episodes)), []
    n_held = min(num_episodes - 1, max(1, round(holdout * num_episodes)))
    cut = num_episodes - n_held
    return list(range(cut)), list(range(cut, num_episodes))


@dataclass
class ActionNormalizer:
    """Per-embodiment z-normalization of action chunks with statistics from the training set."""

    mean: np.ndarray  # (k * A,)
    std: np.ndarray  # (k * A,)

    @classmethod
    def from_stats(cls, stats: dict[str, Sequence[float]], chunk: int = 1) -> "ActionNormalizer":
        mean = np.asarray(stats["mean"], dtype=np.float32)
        std = np.maximum(np.asarray(stats["std"], dtype=np.float32), _STD_FLOOR)
        return cls(mean=np.tile(mean, chunk), std=np.tile(std, chunk))

    @classmethod
    def from_store(cls, store: EpisodeStore, chunk: int = 1) -> "ActionNormalizer":
        return cls.from_stats(store.meta["action_stats"], chunk)

    @classmethod
    def of_state(cls, store: EpisodeStore, episodes: Sequence[int]) -> "ActionNormalizer | None":
        """The statistics of the recorded state over ``episodes`` (None when the store has no state)."""
        if store.state is None or not len(episodes):
            return None
        rows = np.concatenate([np.arange(store.episode_starts[e], store.episode_starts[e + 1]) for e in episodes])
        state = np.asarray(store.state[rows], dtype=np.float64)  # (N, S)
        return cls(mean=state.mean(0).astype(np.float32), std=np.maximum(state.std(0), _STD_FLOOR).astype(np.float32))

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        return ((actions - self.mean) / self.std).astype(np.float32)

    def denormalize(self, z: np.ndarray) -> np.ndarray:
        return (z * self.std + self.mean).astype(np.float32)

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


class WindowDataset:
    """Windows of ``num_frames`` frames (or token grids) with normalized action chunks.

    Window ``i`` starts at control step ``starts[i]`` and takes rows
    ``start, start + k, ..., start + (T - 1) k`` of ``source``; its action for frame t is
    the concatenation of the k control actions from row ``start + t k`` onward.
    Every control step whose window fits in its episode is a start, so a 20 Hz robot
    yields windows at both phases of the 10 Hz frame grid. With ``state_normalizer`` (and a
    store that records a state) a batch also holds ``state``: the normalized state at each
    of the window's frames.
    """

    def __init__(
        self,
        store: EpisodeStore,
        num_frames: int,
        frame_hz: float = DEFAULT_FRAME_HZ,
        *,
        episodes: Sequence[int] | None = None,
        source: np.ndarray | None = None,
        normalizer: ActionNormalizer | None = None,
        state_normalizer: ActionNormalizer | None = None,
    ) -> None:
        if num_frames < 1:
            raise DataError(f"window length {num_frames} must be at least 1 frame")
        self.store = store
        self.num_frames = num_frames
        self.chunk = frame_stride(store.control_hz, frame_hz)
        self.source = store.frames if source is None else source
        if len(self.source) != store.num_frames:
            raise DataError(
                f"source array has {len(self.source)} rows but {store.root} has {store.num_frames} frames"
            )
        self.normalizer = normalizer or ActionNormalizer.from_store(store, self.chunk)
        span = num_frames * self.chunk  # control steps a window covers, its last chunk included
        episodes = range(store.num_episodes) if episodes is None else episodes
        starts = []
        for e in episodes:
            lo, hi = int(store.episode_starts[e]), int(store.episode_starts[e + 1])
            if hi - lo >= span:
                starts.append(np.arange(lo, hi - span + 1, dtype=np.int64))
        self.starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
        # Row offsets of one window, precomputed so a batch is two fancy-index reads.
        self._frame_offsets = np.arange(num_frames, dtype=np.int64) * self.chunk  # (T,)
        self._action_offsets = np.arange(span, dtype=np.int64)  # (T * k,)
        self._normalized_actions: np.ndarray | None = None
        self.state_normalizer = state_normalizer if store.state is not None else None
        self._normalized_state: np.ndarray | None = None

    @property
    def embodiment(self) -> str:
        return self.store.embodiment

    @property
    def action_dim(self) -> int:
        """Stem input size: action_dim * chunk."""
        return self.store.action_dim * self.chunk

    def __len__(self) -> int:
        return len(self.starts)

    def _actions_normalized(self) -> np.ndarray:
        # Normalizing the whole (small) action array once beats doing it per window.
        if self._normalized_actions is None:
            a = np.asarray(self.store.actions, dtype=np.float32)
            mean = self.normalizer.mean[: self.store.action_dim]
            std = self.normalizer.std[: self.store.action_dim]
            self._normalized_actions = ((a - mean) / std).astype(np.float32)
        return self._normalized_actions

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray | str]:
        """Windows ``indices`` stacked: ``frames`` (B, T, ...), ``actions`` (B, T, k*A)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"window index out of range for {len(self)} windows")
        starts = self.starts[idx]  # (B,)
        rows = starts[:, None] + self._frame_offsets[None, :]  # (B, T)
        frames = self.source[rows.reshape(-1)]  # (B*T, ...)
        frames = frames.reshape(len(idx), self.num_frames, *frames.shape[1:])
        arows = starts[:, None] + self._action_offsets[None, :]  # (B, T*k)
        actions = self._actions_normalized()[arows]  # (B, T*k, A)
        actions = actions.reshape(len(idx), self.num_frames, self.action_dim)  # (B, T, k*A)
        batch = {"frames": np.ascontiguousarray(frames), "actions": actions, "embodiment": self.embodiment}
        if self.state_normalizer is not None:
            if self._normalized_state is None:
                self._normalized_state = self.state_normalizer.normalize(np.asarray(self.store.state, np.float32))
            batch["state"] = self._normalized_state[rows]  # (B, T, S)
        return batch

    def __getitem__(self, i: int) -> dict[str, np.ndarray | str]:
        return {k: v if isinstance(v, str) else v[0] for k, v in self.get_batch([i]).items()}


def check_window_fits(store: EpisodeStore, num_frames: int, frame_hz: float = DEFAULT_FRAME_HZ) -> None:
    """Raise a clear error when no episode of ``store`` is long enough for one window."""
    k = frame_stride(store.control_hz, frame_hz)
    longest = int(np.diff(store.episode_starts).max())
    if longest < num_frames * k:
        raise DataError(
            f"{store.root}: longest episode has {longest} control steps, a window of {num_frames} frames "
            f"at {frame_hz:g} Hz needs {num_frames * k} ({math.ceil(num_frames * k / max(longest, 1))}x more)"
        )
