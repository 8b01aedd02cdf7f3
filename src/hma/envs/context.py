"""Context for a world-model rollout: the first frames (and the actions between them) that
the model continues from, taken from a dataset episode or given directly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from hma.data.store import EpisodeStore
from hma.data.windows import split_episodes
from hma.errors import DataError


@dataclass
class Context:
    """frames (n, H, W, 3) uint8 at the model's frame rate; actions (n-1, k*A) raw chunks
    taken between consecutive frames, or None when unknown; state (S,) the recorded state at
    the last frame, or None when unknown."""

    frames: np.ndarray
    actions: np.ndarray | None = None
    state: np.ndarray | None = None


def episode_context(store: EpisodeStore, episode: int, *, num_frames: int, chunk: int, start: int = 0) -> Context:
    """``num_frames`` frames of an episode, every ``chunk``-th control step from ``start``,
    with the action chunks between them (the resampling of :class:`hma.data.windows.WindowDataset`)."""
    if not 0 <= episode < store.num_episodes:
        raise DataError(f"episode {episode} is out of range for {store.root}, expected 0 to {store.num_episodes - 1}")
    ep = store.episode(episode)
    need = start + (num_frames - 1) * chunk + 1
    if len(ep["frames"]) < need:
        raise DataError(f"episode {episode} of {store.root} has {len(ep['frames'])} steps, expected at least {need} "
                        f"for {num_frames} context frames at stride {chunk}")
    rows = start + chunk * np.arange(num_frames)
    frames = np.ascontiguousarray(ep["frames"][rows])  # (n, H, W, 3)
    actions = np.stack([np.asarray(ep["actions"][r : r + chunk]).reshape(-1) for r in rows[:-1]]) if num_frames > 1 else \
        np.zeros((0, chunk * store.action_dim), np.float32)  # (n-1, k*A)
    state = None if ep.get("state") is None else np.asarray(ep["state"][rows[-1]], np.float32)  # (S,)
    return Context(frames=frames, actions=actions.astype(np.float32), state=state)


def heldout_episodes(store: EpisodeStore) -> list[int]:
    """The episodes the model never trained on (hma.data.windows.split_episodes), or all
    of them when the dataset is too small to hold any out."""
    _, held = split_episodes(store.num_episodes)
    return held or list(range(store.num_episodes))


def parse_context(value: Any, *, store: EpisodeStore | None, num_frames: int, chunk: int, chunk_dim: int,
                  rng: np.random.Generator) -> Context:
    """Turn ``options["context"]`` of ``reset`` into a :class:`Context`.

    Accepted: None (a random held-out episode of the env's dataset), an episode index, a
    dataset path, a mapping ``{"frames": (n,H,W,3), "actions": (n-1, k, A) or (n-1, k*A)}``
    (optionally ``"state"``: the (S,) state at the last frame), or ``{"dataset": path,
    "episode": e}`` (both optional).
    """
    if value is None or isinstance(value, (int, np.integer, str, Path)):
        value = {"episode": value} if isinstance(value, (int, np.integer)) or value is None else {"dataset": value}
    if not isinstance(value, Mapping):
        raise DataError(f"reset context is a {type(value).__name__}, expected None, an episode index, a dataset path or a mapping")
    if "frames" in value:
        frames = np.asarray(value["frames"])
        actions = value.get("actions")
        if actions is not None:
            actions = np.asarray(actions, dtype=np.float32).reshape(len(actions), -1)
            if actions.shape != (len(frames) - 1, chunk_dim):
                raise DataError(f"context actions have {actions.shape[0]} chunks of {actions.shape[1]} values, expected "
                                f"{len(frames) - 1} chunks of {chunk_dim} (one between each pair of frames)")
        state = value.get("state")
        return Context(frames=frames, actions=actions, state=None if state is None else np.asarray(state, np.float32))
    if value.get("dataset") is not None:
        store = EpisodeStore(value["dataset"])
    if store is None:
        raise DataError("no dataset to take a context episode from; pass dataset= to the env or context frames in reset(options)")
    episode = value.get("episode")
    if episode is None:
        episode = int(rng.choice(heldout_episodes(store)))
    return episode_context(store, int(episode), num_frames=num_frames, chunk=chunk)
