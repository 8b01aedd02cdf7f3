"""Policies as the apps see them, and the names that pick them on the command line.

A policy acts once per world-model frame and returns one action chunk (chunk, A) in the
embodiment's raw units. Two kinds:

- **Image policies** (``act(frame)``): a behaviour-cloning checkpoint, the world model's
  own action head (:class:`hma.sim.WorldModelPolicy`), or random actions. They run
  closed-loop in the real simulator and in the world model alike.
- **Scripted experts** read the simulator's true state, which a generated video does not
  have. They run closed-loop (at the control rate) in the real simulator only; in the
  world model the action chunks they took there are replayed from the same initial frame.

Names: ``expert:NOISE`` (Gaussian noise std as a fraction of the half action range),
``random``, ``bc:CHECKPOINT`` and ``world-model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
from gymnasium import spaces

from hma.errors import ConfigError


class ImagePolicy(Protocol):
    name: str

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, frame: np.ndarray) -> np.ndarray: ...  # (H, W, 3) uint8 -> (chunk, A) float32


@dataclass(frozen=True)
class ExpertSpec:
    """The simulator's scripted expert with Gaussian action noise (privileged: needs the true state)."""

    noise: float

    @property
    def name(self) -> str:
        return f"expert:{self.noise:g}"


class RandomPolicy:
    """Uniform random chunks inside the action Box (the worst reference policy)."""

    def __init__(self, space: spaces.Box, name: str = "random") -> None:
        self.space = space
        self.name = name
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, frame: np.ndarray) -> np.ndarray:
        return self._rng.uniform(self.space.low, self.space.high).astype(np.float32)


PolicyFactory = Callable[[], ImagePolicy]


def parse_policy(text: str, *, run: Any, embodiment: str, space: spaces.Box, dataset: Any = None) -> ExpertSpec | PolicyFactory:
    """``expert:0.3`` -> :class:`ExpertSpec`; otherwise a factory of fresh image-policy instances."""
    kind, _, arg = text.partition(":")
    if kind == "expert":
        try:
            noise = float(arg or 0.0)
        except ValueError:
            raise ConfigError(f"policy {text!r} has noise {arg!r}, expected a number as in expert:0.3") from None
        if noise < 0:
            raise ConfigError(f"policy {text!r} has negative noise, expected expert:NOISE with NOISE >= 0")
        return ExpertSpec(noise)
    if kind == "random":
        return lambda: RandomPolicy(space, text)
    if kind == "bc":
        if not arg:
            raise ConfigError(f"policy {text!r} names no checkpoint, expected bc:PATH")
        from hma.apps.bc import load_bc_policy

        return lambda: load_bc_policy(arg, name=text)
    if kind == "world-model":
        from hma.sim import WorldModelPolicy

        return lambda: WorldModelPolicy(run, embodiment, dataset=dataset, name=text)
    raise ConfigError(f"policy {text!r} is unknown, expected expert:NOISE, random, bc:CHECKPOINT or world-model")
