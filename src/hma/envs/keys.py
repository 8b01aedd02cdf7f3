"""Keys to actions for ``hma play``: key maps, and what "no key held" means for a robot.

A robot whose action is a velocity, a delta or a torque stands still at the zero action
(clipped into the bounds), and a held key pushes one dimension towards a bound. A robot
whose action is an absolute target position (pusht: the pusher's target in pixels) would
be sent to the corner by the zero action; for it "no key" holds the current position, and
a held key moves the target from there.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gymnasium import spaces

from hma.envs.actions import chunk_shape
from hma.errors import ConfigError
from hma.io import read_json

# Keys in the order dimensions get them: (increase, decrease) pairs, as KeyboardEvent.key names.
_DEFAULT_KEY_PAIRS = [("ArrowRight", "ArrowLeft"), ("ArrowUp", "ArrowDown"), ("e", "q"), ("x", "z"),
                      ("l", "j"), ("i", "k"), ("o", "u"), ("m", "n")]
_ALIASES = {"ArrowRight": "d", "ArrowLeft": "a", "ArrowUp": "w", "ArrowDown": "s"}
# A held key moves a held target by this fraction of its dimension's range per frame: pusht's
# 512 px in about 25 frames, a few pusher widths per second at 10 frames a second.
HOLD_SPEED = 0.04


class Idle(str, enum.Enum):
    """What the action is while no key is held."""

    AUTO = "auto"  # HOLD for a robot in POSITION_CONTROL, else ZERO
    ZERO = "zero"  # 0 clipped into the bounds; a key pushes its dimension towards a bound
    HOLD = "hold"  # the current position; a key moves the target from it by HOLD_SPEED per frame


@dataclass(frozen=True)
class PositionControl:
    """A robot whose action is an absolute target position."""

    state_names: tuple[str, ...]  # the state values of the position the action targets, in action order
    screen_down: tuple[int, ...] = ()  # action dims that grow down the image: the up arrow lowers them


# pusht (hma.data.sim.pusht_env): the pusher's target in pixels, y down the image as gym-pusht
# draws it. The other simulated robots take torques (gym_*) or end-effector deltas.
POSITION_CONTROL: dict[str, PositionControl] = {"pusht": PositionControl(("agent_x", "agent_y"), screen_down=(1,))}


def resolve_idle(idle: Idle | str, embodiment: str) -> Idle:
    """ZERO or HOLD for ``embodiment`` (AUTO: HOLD for a robot in :data:`POSITION_CONTROL`)."""
    try:
        idle = Idle(idle)
    except ValueError:
        raise ConfigError(f"idle {idle!r} is unknown, expected one of: {', '.join(i.value for i in Idle)}") from None
    if idle is Idle.AUTO:
        return Idle.HOLD if embodiment in POSITION_CONTROL else Idle.ZERO
    return idle


@dataclass(frozen=True)
class KeyBinding:
    dim: int  # action dimension the key moves
    value: float  # in [-1, 1]: fraction of the way from the neutral action to the bound (held: of HOLD_SPEED)


def default_keymap(action_dim: int, *, screen_down: tuple[int, ...] = ()) -> dict[str, KeyBinding]:
    """Arrows (and WASD) for the first two action dims, then one key pair per further dim;
    on a ``screen_down`` dim the up arrow lowers the value."""
    keymap: dict[str, KeyBinding] = {}
    for dim, (up, down) in enumerate(_DEFAULT_KEY_PAIRS[:action_dim]):
        sign = -1.0 if dim in screen_down else 1.0
        for key, value in ((up, sign), (down, -sign)):
            keymap[key] = KeyBinding(dim, value)
            if key in _ALIASES:
                keymap[_ALIASES[key]] = KeyBinding(dim, value)
    return keymap


def load_keymap(path: str | Path, action_dim: int) -> dict[str, KeyBinding]:
    """A JSON object ``{"ArrowUp": {"dim": 1, "value": 1.0}, ...}`` (KeyboardEvent.key names)."""
    raw = read_json(path, "key map")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"key map {path} must be a non-empty JSON object of key -> {{\"dim\": int, \"value\": float}}")
    keymap = {}
    for key, spec in raw.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("dim"), int) or not isinstance(spec.get("value"), (int, float)):
            raise ConfigError(f"key map {path}: entry {key!r} is {spec!r}, expected {{\"dim\": int, \"value\": float}}")
        if not 0 <= spec["dim"] < action_dim or not -1.0 <= spec["value"] <= 1.0:
            raise ConfigError(f"key map {path}: entry {key!r} has dim {spec['dim']} / value {spec['value']}, "
                              f"expected dim in 0..{action_dim - 1} and value in [-1, 1]")
        keymap[key] = KeyBinding(spec["dim"], float(spec["value"]))
    return keymap


def keys_to_action(keys: list[str], keymap: dict[str, KeyBinding], space: spaces.Box, *,
                   held: np.ndarray | None = None) -> np.ndarray:
    """Held keys -> an action in the Box's shape, the same at every control step of the chunk.

    Without ``held``: the neutral action (0 clipped into the bounds), moved towards a bound
    on each held key's dimension. With ``held`` (A,), the position to stay at: moved by
    ``value * HOLD_SPEED`` of the range on each held key's dimension, clipped into the bounds.
    """
    chunk, action_dim = chunk_shape(space)
    low, high = space.low.reshape(chunk, action_dim)[0], space.high.reshape(chunk, action_dim)[0]  # (A,)
    if held is not None:
        action = np.clip(np.asarray(held, np.float64), low, high)
        for key in keys:
            if (binding := keymap.get(key)) is not None:
                action[binding.dim] += binding.value * HOLD_SPEED * (high[binding.dim] - low[binding.dim])
        action = np.clip(action, low, high)
    else:
        neutral = np.clip(0.0, low, high)
        action = neutral.copy()
        for key in keys:
            if (binding := keymap.get(key)) is not None:
                d, v = binding.dim, binding.value
                action[d] = neutral[d] + v * ((high[d] - neutral[d]) if v > 0 else (neutral[d] - low[d]))
    return np.tile(action, (chunk, 1)).reshape(space.shape).astype(np.float32)
