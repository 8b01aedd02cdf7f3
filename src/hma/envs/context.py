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


def parse_context(value: Any, *, store: EpisodeStore | None, embodiment: str, num_frames: int, chunk: int,
                  chunk_dim: int, rng: np.random.Generator) -> Context:
    """Turn ``options["context"]`` of ``reset`` into a :class:`Context`.

    Accepted: None (a random held-out episode of the env's dataset), an episode index, a
    dataset path, a mapping ``{"frames": (n,H,W,3), "actions": (n-1, k, A) or (n-1, k*A)}``
    (optionally ``"state"``: the (S,) state at the last frame), or ``{"dataset": path,
    "episode": e}`` (both optional). A dataset must be of ``embodiment``; what the context
    holds is checked by :func:`check_context`.
    """
    if value is None or isinstance(value, (int, np.integer, str, Path)):
        value = {"episode": value} if isinstance(value, (int, np.integer)) or value is None else {"dataset": value}
    if not isinstance(value, Mapping):
        raise DataError(f"reset context is a {type(value).__name__}, expected None, an episode index, a dataset path or a mapping")
    if "frames" in value:
        frames = np.asarray(value["frames"])
        actions = value.get("actions")
        if actions is not None:
            actions = _numbers(actions, "context actions")
            actions = actions.reshape(len(actions), -1) if actions.ndim else actions.reshape(1, 1)
            if actions.shape != (len(frames) - 1, chunk_dim):
                raise DataError(f"context actions have {actions.shape[0]} chunks of {actions.shape[1]} values, expected "
                                f"{len(frames) - 1} chunks of {chunk_dim} (one between each pair of frames)")
        state = value.get("state")
        return Context(frames=frames, actions=actions, state=None if state is None else _numbers(state, "context state"))
    if value.get("dataset") is not None:
        store = EpisodeStore(value["dataset"])
        if store.embodiment != embodiment:
            raise DataError(f"context dataset {store.root} is of embodiment {store.embodiment!r}, expected one of "
                            f"{embodiment!r} (this env's robot)")
    if store is None:
        raise DataError("no dataset to take a context episode from; pass dataset= to the env or context frames in reset(options)")
    episode = value.get("episode")
    if episode is None:
        episode = int(rng.choice(heldout_episodes(store)))
    return episode_context(store, int(episode), num_frames=num_frames, chunk=chunk)


def _numbers(value: Any, what: str) -> np.ndarray:
    """``value`` as a float32 array; a DataError naming ``what`` when it is not numbers."""
    try:
        return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be an array of numbers, got the {type(value).__name__} {str(value)[:60]!r}") from None


def check_context(context: Context, *, embodiment: str, image_size: tuple[int, int], state_dim: int) -> Context:
    """Refuse a context that is not this embodiment's model's input: frames other than uint8
    (n, H, W, 3) at the model's image size (a dataset of another robot or camera), NaN or
    infinite actions or state, a state of another size (``state_dim`` 0: any state is ignored)."""
    h, w = image_size
    frames = context.frames
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (h, w, 3) or not len(frames):
        raise DataError(f"context frames are {frames.dtype} of shape {tuple(frames.shape)}, expected uint8 (n, {h}, {w}, 3): "
                        f"frames of {embodiment!r} at the model's image size {h}x{w}")
    for what, values in (("actions", context.actions), ("state", context.state if state_dim else None)):
        if values is not None and not np.isfinite(values).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
            verb = "hold" if what == "actions" else "holds"
            raise DataError(f"context {what} {verb} {values[bad]} at index {bad}, expected finite numbers "
                            f"(the {what} of {embodiment!r} recorded with the frames)")
    if state_dim and context.state is not None and context.state.shape != (state_dim,):
        raise DataError(f"context state has shape {tuple(context.state.shape)}, expected ({state_dim},) "
                        f"(the state of {embodiment!r} at the last context frame)")
    return context
