"""The world model as a policy: it sees frames and predicts the next action chunk with its
embodiment's action head (paper: the "policy" setting, actions masked instead of frames)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hma.data.store import EpisodeStore
from hma.envs.env import SimCore
from hma.run import RunLike


class WorldModelPolicy:
    """Closed-loop policy: ``reset()``, then ``act(frame)`` once per frame of the real (or
    generated) environment. Frames and the actions taken go into the model's KV cache,
    which slides over the model's window, so memory stays constant.

    Predicted chunks are clipped to the dataset's action range (the same Box as
    :class:`hma.envs.WorldModelEnv`) and returned in its shape, float32: (chunk, action_dim),
    or (action_dim,) for a chunk of one.
    """

    def __init__(self, run: RunLike, embodiment: str, *, dataset: str | Path | EpisodeStore | None = None,
                 name: str = "world-model", device: str | torch.device | None = None) -> None:
        self.core = SimCore(run, embodiment, dataset=dataset, context_frames=1, max_episode_steps=1,
                            sampling=None, out_of_range="clip", device=device)
        self.action_space = self.core.action_space
        self.name = name
        self._last: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        """Forget the past frames; ``seed`` is accepted for the policy protocol (the head is deterministic)."""
        self.core.rollout.begin(1)
        self._last = None

    def act(self, frame: np.ndarray) -> np.ndarray:
        """frame (H, W, 3) uint8 -> action chunk (chunk, action_dim) or (action_dim,) float32."""
        if self.core.rollout.batch_size == 0:
            self.reset()
        prev = None if self._last is None else self._last.reshape(1, -1)
        chunk = self.core.rollout.observe(np.asarray(frame)[None], prev)[0]  # (k*A,)
        action = np.clip(chunk.reshape(self.action_space.shape), self.action_space.low, self.action_space.high)
        self._last = action.astype(np.float32)
        return self._last.copy()
