"""Frame-by-frame generation with a world model: the loop around the model, not part of it.

``Engine(model, ...)`` keeps the rollout state of a batch of environments (B >= 1, one
model call per unmasking step for all of them) and produces one new frame per
``step(action)``; any horizon runs in constant memory because only the last ``window``
frames are kept. Two ways to condition on the past, chosen by :class:`CacheMode`:

- ``CACHED``: the model's temporal KV cache (``new_cache`` / ``prefill`` /
  ``forward_frame`` / ``commit_frame``, docs/dev/contracts.md "World model"): each
  unmasking step runs only the new frame's tokens against the cached keys/values of the
  past frames, and the finished frame is committed once. Past the window the cache
  slides: ``Slide.EVICT`` (default) drops the oldest frame's keys/values and keeps the
  rest as computed (constant cost per frame, a slightly longer memory than the window);
  ``Slide.EXACT`` re-encodes the kept frames so outputs equal the uncached window's.
- ``UNCACHED``: the reference's way, re-running the whole window (past frames + the
  partly revealed new one) at every unmasking step. Kept as the baseline and as the
  ground truth the cached path is tested against.

Discrete models are sampled with MaskGIT (:mod:`hma.sampling.maskgit`), continuous ones
with MAR's diffusion head (:mod:`hma.sampling.mar`).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import torch
from torch import Tensor

from hma.config import TokenKind
from hma.errors import ConfigError
from hma.model import KVCache, WorldModel, WorldModelOutput
from hma.model.cache import Slide
from hma.sampling.mar import MARSampling, unmask_latent_frame
from hma.model.objectives import add_stay_bias
from hma.sampling.maskgit import MaskGITSampling, unmask_token_frame
from hma.sampling.precision import Precision, autocast, compile_trunk, prepare, resolve


class CacheMode(str, Enum):
    """How each unmasking step sees the past frames."""

    CACHED = "cached"  # temporal KV cache: one frame per pass
    UNCACHED = "uncached"  # the whole window per pass, as the reference does


class Engine:
    """Rollout state and sampling loop for one batch of environments.

    ``reset(context, actions)`` takes the context frames (B, T0, h, w) token ids or
    (B, T0, C, h, w) latents and the T0 - 1 actions taken between them (B, T0 - 1, k*A);
    ``step(action)`` takes the action taken at the latest frame (B, k*A) and returns the
    frame it leads to, (B, h, w) or (B, C, h, w). All randomness comes from ``generator``.
    ``precision`` (:mod:`hma.sampling.precision`): fp32, bf16 autocast, an int8 copy of
    the model's linear layers, or ``auto`` (what this machine runs fastest; ``choice`` says
    which and why). ``hide_actions`` shows the model every action as hidden, as a
    passive-video run was trained (its action stems were never used, so real actions would
    reach untrained weights); the actions passed in are still checked. ``compile`` puts the
    model's trunk through ``torch.compile`` (:func:`hma.sampling.precision.compile_trunk`; in
    place, so every user of this model object runs it compiled). ``state`` is the
    newest frame's normalized state (B, S) as the model's state head reads it out, None for
    an embodiment without one.
    """

    def __init__(self, model: WorldModel, *, embodiment: str, mode: CacheMode = CacheMode.CACHED,
                 sampling: MaskGITSampling | MARSampling | None = None, window: int | None = None,
                 slide: Slide = Slide.EVICT, precision: str | Precision = Precision.FP32,
                 hide_actions: bool = False, compile: bool = False) -> None:
        config = model.config
        self.hide_actions = hide_actions
        self.choice = resolve(precision, next(model.parameters()).device, compile=compile)
        self.precision = self.choice.precision
        self.model = prepare(model, self.precision)
        if compile:
            compile_trunk(self.model)
        self.embodiment = embodiment
        self.mode = CacheMode(mode)
        self.slide = Slide(slide)
        self.discrete = config.kind == TokenKind.DISCRETE
        self.sampling = sampling or (MaskGITSampling() if self.discrete else MARSampling())
        if self.discrete != isinstance(self.sampling, MaskGITSampling):
            expected = "MaskGITSampling" if self.discrete else "MARSampling"
            raise ConfigError(f"sampling {type(self.sampling).__name__} does not fit a {config.kind} model; expected {expected}")
        self.window = window or config.num_frames
        if not 2 <= self.window <= config.num_frames:
            raise ConfigError(f"window of {self.window} frames is invalid; expected 2..{config.num_frames} (the model's training window)")
        model.check_actions(embodiment, None)
        self.cache: KVCache | None = None
        # Uncached state: the last window - 1 frames and the actions taken between them.
        self.past: Tensor | None = None  # (B, n, ...) n <= window - 1
        self.past_actions: Tensor | None = None  # (B, n - 1, k*A)
        self.state: Tensor | None = None  # (B, S) of the newest frame
        self.last_frame: Tensor | None = None  # (B, h, w) token ids of the newest frame (discrete)
        self._has_state = embodiment in model.state_heads

    @torch.inference_mode()
    def reset(self, context: Tensor, actions: Tensor) -> None:
        """Start a rollout from context frames (B, T0, ...) and the actions between them (B, T0 - 1, k*A)."""
        t0 = context.shape[1]
        if t0 < 1 or actions.shape[:2] != (context.shape[0], t0 - 1):
            raise ConfigError(f"context of shape {tuple(context.shape)} needs actions of shape (B, T0 - 1, k*A) = "
                              f"({context.shape[0]}, {t0 - 1}, k*A), got {tuple(actions.shape)}")
        self.model.check_actions(self.embodiment, actions)
        with autocast(self.precision, context.device):
            self._reset(context, actions, t0)

    def _reset(self, context: Tensor, actions: Tensor, t0: int) -> None:
        keep = min(t0, self.window - 1)  # the new frame takes the last slot of the window
        self.last_frame = context[:, -1] if self.discrete else None
        context, actions = context[:, t0 - keep:], actions[:, t0 - keep:]
        if self.mode is CacheMode.CACHED:
            self.cache = self.model.new_cache(context.shape[0], self.window, slide=self.slide)
            # prefill reads actions[:, t] as taken at frame t; the last frame's action comes with step().
            padded = torch.cat([actions, actions.new_zeros(actions.shape[0], 1, actions.shape[2])], dim=1)  # (B, keep, k*A)
            self.state = self.model.prefill(context, None if self.hide_actions else padded, embodiment=self.embodiment,
                                            cache=self.cache)
        else:
            self.past, self.past_actions = context.clone(), actions.clone()
            self.state = self._window_state()

    @torch.inference_mode()
    def step(self, action: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Generate the frame that ``action`` (B, k*A), taken at the latest frame, leads to."""
        if self.cache is None and self.past is None:
            raise ConfigError("the engine has no context; call reset(context, actions) before step(action)")
        self.model.check_actions(self.embodiment, action)
        predict = self._predictor(action)
        config = self.model.config
        ref = self.model.mask_token
        batch = action.shape[0]
        with autocast(self.precision, ref.device):
            if self.discrete:
                frame = unmask_token_frame(predict, batch=batch, grid=config.grid, sampling=self.sampling,
                                           generator=generator, device=ref.device)  # (B, h, w)
            else:
                frame = unmask_latent_frame(predict, self.model.diffusion, batch=batch, channels=config.latent_channels,
                                            grid=config.grid, sampling=self.sampling, generator=generator,
                                            device=ref.device, dtype=ref.dtype)  # (B, C, h, w)
            self._remember(frame, action)
        return frame

    def _output(self, out: WorldModelOutput) -> Tensor:
        """The last frame's logits (B, S, V) / (B, S, F, Vf), or its diffusion condition (B, S, D), in fp32."""
        return (out.logits[:, -1] if self.discrete else out.cond[:, -1]).float()

    def _predictor(self, action: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """The new frame's logits (or diffusion condition) given its partly revealed tokens; for
        token ids with the sampling's action guidance and stay bias applied."""
        def conditional(hide: bool) -> Callable[[Tensor, Tensor], Tensor]:
            if self.mode is CacheMode.CACHED:
                return self._cached_predictor(action, hide_new_action=hide)
            return self._window_predictor(action, hide_new_action=hide)

        predict = conditional(self.hide_actions)
        if not self.discrete:
            return predict
        guidance, stay_bias = self.sampling.guidance, self.sampling.stay_bias
        if guidance != 1.0 and not self.hide_actions:
            cond, uncond = predict, conditional(True)

            def predict(frame: Tensor, masked: Tensor) -> Tensor:
                u = uncond(frame, masked)
                return u + guidance * (cond(frame, masked) - u)
        if stay_bias:
            unbiased, stay = predict, self.last_frame.flatten(1)  # (B, S)

            def predict(frame: Tensor, masked: Tensor) -> Tensor:
                return add_stay_bias(unbiased(frame, masked), stay, stay_bias)
        return predict

    def _cached_predictor(self, action: Tensor, *, hide_new_action: bool) -> Callable[[Tensor, Tensor], Tensor]:
        def predict(frame: Tensor, masked: Tensor) -> Tensor:
            out = self.model.forward_frame(frame, None if hide_new_action else action, embodiment=self.embodiment,
                                           frame_mask=masked, cache=self.cache)
            return self._output(out)

        return predict

    def _window_predictor(self, action: Tensor, *, hide_new_action: bool) -> Callable[[Tensor, Tensor], Tensor]:
        past, past_actions = self.past, self.past_actions
        # Window actions follow the model's convention (actions[:, t] taken at frame t); the
        # new frame's own action is not known yet and does not reach any frame in the window.
        actions = torch.cat([past_actions, action[:, None], torch.zeros_like(action[:, None])], dim=1)  # (B, n+1, k*A)
        hidden = torch.zeros(past.shape[:2], dtype=torch.bool, device=past.device)  # (B, n) past frames visible
        action_mask = None
        if self.hide_actions:
            action_mask = torch.ones(actions.shape[:2], dtype=torch.bool, device=past.device)  # (B, n+1) all hidden
        elif hide_new_action:
            action_mask = torch.zeros(actions.shape[:2], dtype=torch.bool, device=past.device)  # (B, n+1)
            action_mask[:, -2] = True  # the action that leads to the new frame

        def predict(frame: Tensor, masked: Tensor) -> Tensor:
            tokens = torch.cat([past, frame[:, None].to(past.dtype)], dim=1)  # (B, n+1, ...)
            token_mask = torch.cat([hidden[:, :, None, None].expand(-1, -1, *masked.shape[1:]), masked[:, None]], dim=1)
            out = self.model(tokens, actions, embodiment=self.embodiment, token_mask=token_mask, action_mask=action_mask)
            return self._output(out)

        return predict

    def _remember(self, frame: Tensor, action: Tensor) -> None:
        """Make the finished frame part of the past; memory stays bounded by the window."""
        if self.discrete:
            self.last_frame = frame
        if self.mode is CacheMode.CACHED:
            self.state = self.model.commit_frame(frame, None if self.hide_actions else action,
                                                 embodiment=self.embodiment, cache=self.cache)
            return
        past = torch.cat([self.past, frame[:, None].to(self.past.dtype)], dim=1)  # (B, n+1, ...)
        actions = torch.cat([self.past_actions, action[:, None]], dim=1)  # (B, n, k*A)
        drop = max(past.shape[1] - (self.window - 1), 0)
        self.past, self.past_actions = past[:, drop:], actions[:, drop:]
        self.state = self._window_state()

    def _window_state(self) -> Tensor | None:
        """Uncached: the newest past frame's state from one more pass over the kept frames."""
        if not self._has_state:
            return None
        actions = torch.cat([self.past_actions, torch.zeros_like(self.past_actions[:, :1])], dim=1)  # (B, n, k*A)
        hidden = (torch.ones(actions.shape[:2], dtype=torch.bool, device=actions.device) if self.hide_actions else None)
        out = self.model(self.past, actions, embodiment=self.embodiment, action_mask=hidden)
        return out.state_pred[:, -1]


@torch.inference_mode()
def rollout(engine: Engine, context: Tensor, actions: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Generate one frame per action after the context.

    context (B, T0, ...); actions (B, T0 - 1 + N, k*A): the actions between the context
    frames, then the N actions taken at the last context frame and at each generated
    frame. Returns the N generated frames (B, N, ...).
    """
    t0 = context.shape[1]
    engine.reset(context, actions[:, : t0 - 1])
    frames = [engine.step(actions[:, t], generator) for t in range(t0 - 1, actions.shape[1])]
    return torch.stack(frames, dim=1)
