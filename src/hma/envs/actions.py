"""The action space of a simulated embodiment and the checks every action passes first.

One env step is one world-model frame, so one action is the chunk of ``k`` control-step
actions taken inside that frame (``k = control_hz / frame_hz``, paper sec. 3): a Box of
shape ``(k, action_dim)``, flattened row by row into the model's ``k * action_dim`` stem
input, exactly as :class:`hma.data.windows.WindowDataset` concatenates them. A chunk of
one is a Box of shape ``(action_dim,)``, as gym-pusht's and LeRobot's envs take it; the
chunk layout ``(1, action_dim)`` is accepted for it too.
"""

from __future__ import annotations

import enum

import numpy as np
from gymnasium import spaces

from hma.errors import EmbodimentError


class OutOfRange(str, enum.Enum):
    """What a finite action outside the Box's bounds does."""

    CLIP = "clip"  # clipped to the bounds: noisy policies stay usable (the default)
    RAISE = "raise"  # rejected with an EmbodimentError


def action_box(low: np.ndarray, high: np.ndarray, chunk: int) -> spaces.Box:
    """Box of shape (chunk, action_dim), or (action_dim,) for a chunk of one, from
    per-dimension bounds (action_dim,)."""
    low = np.asarray(low, dtype=np.float32)
    high = np.asarray(high, dtype=np.float32)
    # A dimension that never moved in the data would make an empty Box; give it a tiny width.
    high = np.where(high > low, high, low + 1e-6).astype(np.float32)
    if chunk == 1:
        return spaces.Box(low=low, high=high, dtype=np.float32)
    return spaces.Box(low=np.tile(low, (chunk, 1)), high=np.tile(high, (chunk, 1)), dtype=np.float32)


def chunk_shape(space: spaces.Box) -> tuple[int, int]:
    """(chunk, action_dim) of an action Box, whichever of its two layouts it has."""
    return (1, space.shape[0]) if len(space.shape) == 1 else (space.shape[0], space.shape[1])


def _layout(arr: np.ndarray, space: spaces.Box, batch: tuple[int, ...]) -> np.ndarray | None:
    """``arr`` in the Box's shape (after ``batch``), or None when it is in neither layout."""
    if tuple(arr.shape) == (*batch, *space.shape):
        return arr
    if tuple(arr.shape) == (*batch, *chunk_shape(space)):  # a chunk of one as (1, A)
        return arr.reshape(*batch, *space.shape)
    return None


def check_action(action: object, space: spaces.Box, *, embodiment: str, out_of_range: OutOfRange,
                 batch_size: int | None = None) -> np.ndarray:
    """Validate one action of the Box's shape, or a batch (B, ...) when ``batch_size`` is given.

    Returns the float32 action in the Box's shape, clipped if ``out_of_range`` is CLIP.
    Integer actions are cast to float. Wrong types, other dtypes, shapes, NaN/inf and (with
    RAISE) out-of-range values raise :class:`EmbodimentError`.
    """
    batch = () if batch_size is None else (batch_size,)
    expected = (*batch, *space.shape)
    names = "chunk, action_dim" if len(space.shape) == 2 else "action_dim"
    if isinstance(action, (list, tuple)):
        action = np.asarray(action)
    if not hasattr(action, "shape") or not hasattr(action, "dtype"):
        raise EmbodimentError(f"action for {embodiment!r} is a {type(action).__name__}, expected a float array of shape {expected}")
    arr = action.detach().cpu().numpy() if hasattr(action, "detach") else np.asarray(action)
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float64)
    if not np.issubdtype(arr.dtype, np.floating):
        raise EmbodimentError(f"action for {embodiment!r} has dtype {arr.dtype}, expected a float (float32) or integer array")
    shaped = _layout(arr, space, batch)
    if shaped is None:
        raise EmbodimentError(f"action for {embodiment!r} has shape {tuple(arr.shape)}, expected {expected} ({names})"
                              if batch_size is None else
                              f"actions for {embodiment!r} have shape {tuple(arr.shape)}, expected {expected} (envs, {names})")
    arr = shaped
    if not np.isfinite(arr).all():
        raise EmbodimentError(f"action for {embodiment!r} contains NaN or inf ({arr.reshape(-1)[~np.isfinite(arr.reshape(-1))][0]}), expected finite values")
    big = np.finfo(np.float32).max
    if (np.abs(arr) > big).any():
        value = arr.reshape(-1)[np.abs(arr.reshape(-1)) > big][0]
        raise EmbodimentError(f"action for {embodiment!r} holds {value:g}, beyond float32's range; expected values within the action space")
    arr = arr.astype(np.float32)
    outside = (arr < space.low) | (arr > space.high)
    if outside.any():
        if out_of_range is OutOfRange.RAISE:
            index = tuple(int(i) for i in np.argwhere(outside)[0])
            low, high = space.low[index[len(batch):]], space.high[index[len(batch):]]
            raise EmbodimentError(f"action for {embodiment!r} has value {float(arr[index]):.4g} at index {index}, "
                                  f"expected values in [{low:.4g}, {high:.4g}] (the dataset's range)")
        arr = np.clip(arr, space.low, space.high)
    return arr
