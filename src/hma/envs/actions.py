"""The action space of a simulated embodiment and the checks every action passes first.

One env step is one world-model frame, so one action is the chunk of ``k`` control-step
actions taken inside that frame (``k = control_hz / frame_hz``, paper sec. 3): a Box of
shape ``(k, action_dim)``, flattened row by row into the model's ``k * action_dim`` stem
input, exactly as :class:`hma.data.windows.WindowDataset` concatenates them.
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
    """Box of shape (chunk, action_dim) from per-dimension bounds (action_dim,)."""
    low = np.asarray(low, dtype=np.float32)
    high = np.asarray(high, dtype=np.float32)
    # A dimension that never moved in the data would make an empty Box; give it a tiny width.
    high = np.where(high > low, high, low + 1e-6).astype(np.float32)
    return spaces.Box(low=np.tile(low, (chunk, 1)), high=np.tile(high, (chunk, 1)), dtype=np.float32)


def check_action(action: object, space: spaces.Box, *, embodiment: str, out_of_range: OutOfRange,
                 batch_size: int | None = None) -> np.ndarray:
    """Validate one action (chunk, A), or a batch (B, chunk, A) when ``batch_size`` is given.

    Returns the float32 action, clipped if ``out_of_range`` is CLIP. Wrong types, dtypes,
    shapes, NaN/inf and (with RAISE) out-of-range values raise :class:`EmbodimentError`.
    """
    expected = space.shape if batch_size is None else (batch_size, *space.shape)
    if isinstance(action, (list, tuple)):
        action = np.asarray(action)
    if not hasattr(action, "shape") or not hasattr(action, "dtype"):
        raise EmbodimentError(f"action for {embodiment!r} is a {type(action).__name__}, expected a float array of shape {expected}")
    arr = action.detach().cpu().numpy() if hasattr(action, "detach") else np.asarray(action)
    if not np.issubdtype(arr.dtype, np.floating):
        raise EmbodimentError(f"action for {embodiment!r} has dtype {arr.dtype}, expected a floating-point array (float32)")
    if tuple(arr.shape) != tuple(expected):
        raise EmbodimentError(f"action for {embodiment!r} has shape {tuple(arr.shape)}, expected {tuple(expected)} (chunk, action_dim)"
                              if batch_size is None else
                              f"actions for {embodiment!r} have shape {tuple(arr.shape)}, expected {tuple(expected)} (envs, chunk, action_dim)")
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
            low, high = space.low[index[-2:]], space.high[index[-2:]]
            raise EmbodimentError(f"action for {embodiment!r} has value {float(arr[index]):.4g} at index {index}, "
                                  f"expected values in [{low:.4g}, {high:.4g}] (the dataset's range)")
        arr = np.clip(arr, space.low, space.high)
    return arr
