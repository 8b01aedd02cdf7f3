"""The ground-truth simulator of an embodiment, stepped at the world model's frame rate.

Wraps a :class:`hma.data.sim.base.SimEnv` from the embodiment registry: one ``step`` runs
the ``k`` control steps of an action chunk, and success is the simulator's own flag.
Scripted experts act at the control rate, with Gaussian noise as a fraction of the half
action range, as the data generator does (:mod:`hma.data.sim.rollout`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hma.data.sim.registry import FRAME_HZ, get_embodiment
from hma.errors import EmbodimentError


@dataclass
class Transition:
    frame: np.ndarray  # (H, W, 3) uint8 after the chunk
    success: bool  # the simulator reported success at some control step of the chunk
    chunk: np.ndarray  # (k, A) the actions actually executed (clipped)


class RealSimulator:
    """One real simulator instance; use as a context manager (closes the renderer)."""

    def __init__(self, embodiment: str, image_size: int, *, frame_hz: float = FRAME_HZ) -> None:
        self.spec = get_embodiment(embodiment)
        self.chunk = round(self.spec.control_hz / frame_hz)
        if self.chunk < 1 or abs(self.chunk * frame_hz - self.spec.control_hz) > 1e-6:
            raise EmbodimentError(f"embodiment {embodiment!r} runs at {self.spec.control_hz} Hz, expected a multiple of the {frame_hz} Hz frame rate")
        self.env = self.spec.make(image_size)
        self.low, self.high = np.asarray(self.env.action_low), np.asarray(self.env.action_high)

    def reset(self, seed: int) -> np.ndarray:
        """The same seed gives the same initial state (object and goal positions)."""
        self.env.reset(np.random.default_rng([seed, 7919]))
        return self.env.frame()

    def step(self, chunk: np.ndarray) -> Transition:
        chunk = np.clip(np.asarray(chunk, np.float64).reshape(self.chunk, -1), self.low, self.high)
        success = False
        for action in chunk:
            self.env.step(action)
            success = success or bool(self.env.success())
        return Transition(self.env.frame(), success, chunk.astype(np.float32))

    def state(self) -> np.ndarray:
        """The simulator's state now (S,) float32: what the datasets record as ``state``."""
        return np.asarray(self.env.state(), np.float32)

    def expert_step(self, noise: float, rng: np.random.Generator) -> Transition:
        """One frame of the scripted expert, re-planning at every control step."""
        half_range = (self.high - self.low) / 2
        chunk, success = [], False
        for _ in range(self.chunk):
            action = np.clip(self.env.expert() + noise * half_range * rng.standard_normal(len(self.low)), self.low, self.high)
            self.env.step(action)
            success = success or bool(self.env.success())
            chunk.append(action)
        return Transition(self.env.frame(), success, np.asarray(chunk, np.float32))

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> "RealSimulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
