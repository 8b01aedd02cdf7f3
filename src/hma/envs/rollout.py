"""A batch of world-model rollouts: context in, one generated frame per action chunk out.

This is the state every simulator front end shares (the gymnasium env, the vector env,
the play server, policy evaluation, synthetic data): pixels and raw actions at the
boundary, tokens and normalized actions inside. Generation itself is
:class:`hma.sampling.engine.Engine`: one batched masked-generation pass per unmasking
step for all B rollouts, with the model's KV cache sliding over its window, so memory
stays constant over rollouts of any length (paper: plausible for >100 frames).
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange

from hma.config import EmbodimentSpec
from hma.errors import ConfigError, DataError, EmbodimentError
from hma.model import WorldModel
from hma.run import LoadedRun
from hma.sampling.generators import frame_generator
from hma.sampling.mar import MARSampling
from hma.sampling.maskgit import MaskGITSampling


class WorldModelRollout:
    """Batched, cached frame-by-frame generation for one embodiment.

    ``run`` is what :func:`hma.load` returns (``.model``, ``.tokenizer``). Actions passed
    here are raw (unnormalized) chunks ``(B, k * A)``; normalization uses the statistics
    stored with the model's embodiment. ``states`` is the newest frame's proprioceptive state
    (B, S) in raw units: the recorded one for a context frame when the context carries it,
    else what the model's state head reads out of the frame; None when the embodiment has
    no state head. ``actions`` is the raw chunk (B, k*A) that led to the newest frame (None
    for a one-frame context).
    """

    def __init__(self, run: LoadedRun, embodiment: str, *, sampling: MaskGITSampling | MARSampling | None = None,
                 precision: str = "auto") -> None:
        self.model = run.model.eval()
        self.tokenizer = run.tokenizer
        self.spec: EmbodimentSpec = _embodiment_spec(run, embodiment)
        self.embodiment = embodiment
        self.engine = frame_generator(run, embodiment, sampling=sampling, precision=precision)
        self.window: int = self.model.config.num_frames
        self.frame_hz = run.frame_hz  # the run's recorded rate (the baseline's own config does not carry it)
        if tuple(self.tokenizer.grid) != tuple(self.model.config.grid):
            raise ConfigError(f"tokenizer grid {tuple(self.tokenizer.grid)} does not match the model's grid {self.model.config.grid}")
        self._normalizer = self.spec.normalizer
        self._state_normalizer = self.spec.state_normalizer
        self.states: np.ndarray | None = None  # (B, S) raw state of the newest frames
        self.actions: np.ndarray | None = None  # (B, k*A) raw chunks that led to the newest frames
        self._policy_cache = None  # policy mode's own cache of observed (real) frames
        self._batch = 0
        self.frames: np.ndarray | None = None  # (B, H, W, 3) the newest frame of each rollout

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.tokenizer.image_size)

    @property
    def batch_size(self) -> int:
        return self._batch

    @property
    def state_names(self) -> list[str]:
        """What :attr:`states` holds, one name per value; empty without a state head."""
        return list(self.spec.state_names) if self._has_state else []

    @property
    def _has_state(self) -> bool:
        return self.embodiment in self.model.state_heads

    def _read_state(self) -> np.ndarray | None:
        state = self.engine.state  # (B, S) normalized, None without a state head
        if state is None or self._state_normalizer is None:
            return None
        return self._state_normalizer.denormalize(state.float().cpu().numpy())

    def _normalize(self, actions: np.ndarray) -> torch.Tensor:
        z = self._normalizer.normalize(np.asarray(actions, dtype=np.float32))
        return torch.as_tensor(z, device=self.device, dtype=next(self.model.parameters()).dtype)

    @torch.inference_mode()
    def reset(self, frames: np.ndarray, actions: np.ndarray | None = None, states: np.ndarray | None = None) -> np.ndarray:
        """Start B rollouts from context frames (B, n, H, W, 3) uint8 and the raw action
        chunks taken between them (B, n-1, k*A) (None is allowed for one frame), with the
        newest frames' recorded states (B, S) when known. Returns the newest context frame
        of each rollout (B, H, W, 3)."""
        frames = np.asarray(frames)
        h, w = self.image_size
        if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[2:] != (h, w, 3):
            raise DataError(f"context frames are {frames.dtype}{list(frames.shape)}, expected uint8[B, n, {h}, {w}, 3]")
        b, n = frames.shape[:2]
        window = self.window
        if not 1 <= n <= window:
            raise DataError(f"context has {n} frames, expected 1 to {window} (the model's window)")
        if actions is None and n > 1:
            raise DataError(f"context of {n} frames has no actions, expected the {n - 1} action chunks taken between its frames")
        actions = np.zeros((b, 0, self.spec.chunk_dim), np.float32) if actions is None else np.asarray(actions)
        if actions.shape != (b, n - 1, self.spec.chunk_dim):
            raise DataError(f"context actions have shape {actions.shape}, expected ({b}, {n - 1}, {self.spec.chunk_dim})")
        tokens = self.tokenizer.encode(rearrange(frames, "b n h w c -> (b n) h w c"))  # (B*n, h, w) or (B*n, C, h, w)
        tokens = rearrange(tokens, "(b n) ... -> b n ...", b=b).to(self.device)  # (B, n, ...)
        self.engine.reset(tokens, self._normalize(actions))  # one batch for all B rollouts
        self._batch = b
        self.frames = np.ascontiguousarray(frames[:, -1])
        self.actions = np.array(actions[:, -1], np.float32) if n > 1 else None
        self.states = self._read_state()
        if states is not None and self.states is not None:
            states = np.asarray(states, dtype=np.float32)
            if states.shape != self.states.shape:
                raise DataError(f"context states have shape {states.shape}, expected {self.states.shape} "
                                f"(one state of {len(self.state_names)} values per rollout)")
            self.states = states.copy()
        return self.frames

    @torch.inference_mode()
    def step(self, actions: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
        """Generate the next frame of every rollout from the raw action chunks (B, k*A)
        taken at the current frame; returns the frames (B, H, W, 3) uint8."""
        if self.frames is None:
            raise ConfigError("the rollout was stepped before reset; call reset() with context frames first")
        tokens = self.engine.step(self._normalize(actions), generator)  # (B, h, w) or (B, C, h, w)
        self.frames = self.tokenizer.decode(tokens).cpu().numpy()  # (B, H, W, 3)
        self.states = self._read_state()
        self.actions = np.array(actions, np.float32).reshape(len(actions), -1)
        return self.frames

    def begin(self, batch_size: int) -> None:
        """Start B rollouts with no context; frames then come in through :meth:`observe`."""
        if not isinstance(self.model, WorldModel):
            raise ConfigError(f"policy mode needs a world model with an action head, got a {type(self.model).__name__} run")
        self._policy_cache = self.model.new_cache(batch_size)
        self._batch = batch_size
        self.frames = None
        self.actions = None

    @torch.inference_mode()
    def observe(self, frames: np.ndarray, actions: np.ndarray | None) -> np.ndarray:
        """Commit real frames (B, H, W, 3) reached by raw action chunks (B, k*A) (None for a
        first frame) instead of generating them, and return the action head's raw chunk
        (B, k*A) for the next step: the paper's policy setting (frames visible, actions hidden)."""
        if self._policy_cache is None:
            raise ConfigError("observe() was called before begin()")
        tokens = self.tokenizer.encode(np.asarray(frames)).to(self.device)  # (B, h, w) or (B, C, h, w)
        act = None if actions is None else self._normalize(actions)
        # forward_frame reads the action head without touching the cache; commit_frame then
        # stores the frame (and runs no heads), so the frame costs two passes.
        out = self.model.forward_frame(tokens, act, embodiment=self.embodiment, cache=self._policy_cache)
        self.model.commit_frame(tokens, act, embodiment=self.embodiment, cache=self._policy_cache)
        self.frames = np.asarray(frames)
        return self._normalizer.denormalize(out.action_pred[:, -1].float().cpu().numpy())  # (B, k*A)


def _embodiment_spec(run: LoadedRun, embodiment: str) -> EmbodimentSpec:
    """The spec (action sizes, normalizer) of ``embodiment``; an EmbodimentError names the known ones."""
    specs = run.embodiments
    if embodiment not in specs:
        raise EmbodimentError(f"embodiment {embodiment!r} is unknown to this run, expected one of: "
                              f"{', '.join(sorted(specs)) or 'none'}")
    return specs[embodiment]
