"""Frame-by-frame DDIM sampling of the video diffusion baseline (:mod:`hma.baselines.diffusion`).

:class:`DDIMEngine` has the :class:`hma.sampling.engine.Engine` contract: ``reset(context,
actions)`` takes the context latents (B, T0, C, h, w) and the T0 - 1 actions taken between
them; each ``step(action)`` denoises the frame that ``action`` leads to from noise in
``steps`` DDIM steps (one single-frame network pass each, past frames read from the
baseline's temporal cache), then commits it as a clean frame.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from hma.baselines.diffusion import FrameCache, VideoDiffusion
from hma.errors import ConfigError
from hma.sampling.precision import Precision, PrecisionChoice


class DDIMEngine:
    """Rollout state and DDIM loop of a :class:`VideoDiffusion` for one batch of environments."""

    def __init__(self, model: VideoDiffusion, *, embodiment: str, steps: int | None = None,
                 window: int | None = None) -> None:
        self.model = model
        self.embodiment = embodiment
        self.state: torch.Tensor | None = None  # the baseline reads out no state
        self.choice = PrecisionChoice(Precision.FP32, Precision.FP32)  # the baseline samples in fp32 only
        self.steps = steps or model.config.sample_steps
        self.window = window or model.config.num_frames
        if self.steps < 1 or self.steps > model.config.train_timesteps:
            raise ConfigError(f"DDIM steps {self.steps} is invalid; expected 1..{model.config.train_timesteps}")
        self.scheduler = DDIMScheduler.from_config(model.noise_schedule.config)
        self.scheduler.set_timesteps(self.steps)
        self.cache: FrameCache | None = None

    def _pass(self, frame: torch.Tensor, prev_action: torch.Tensor, timestep: int, *, first: bool) -> torch.Tensor:
        """One single-frame pass at the cache's current frame: frame (B, C, h, w) -> eps (B, C, h, w)."""
        cache = self.cache
        b = frame.shape[0]
        tau = torch.full((b, 1), timestep, dtype=torch.long, device=frame.device)  # (B, 1)
        cond = self.model.frame_conditions(prev_action[:, None], tau, embodiment=self.embodiment, first=first)  # (B, 1, D)
        positions = torch.tensor([cache.frame], device=frame.device)  # (1,)
        return self.model(frame[:, None], cond, positions, cache)[:, 0]

    @torch.inference_mode()
    def reset(self, context: torch.Tensor, actions: torch.Tensor) -> None:
        """context (B, T0, C, h, w) clean latents; actions (B, T0 - 1, k*A): ``actions[:, t]``
        taken at frame t, leading to frame t + 1."""
        cfg = self.model.config
        b, t0 = context.shape[:2]
        if t0 < 1 or actions.shape[:2] != (b, t0 - 1):
            raise ConfigError(f"context of shape {tuple(context.shape)} needs actions of shape (B, T0 - 1, k*A) = "
                              f"({b}, {t0 - 1}, k*A), got {tuple(actions.shape)}")
        self.cache = FrameCache(depth=cfg.depth, batch=b, tokens=cfg.num_tokens, heads=cfg.heads,
                                head_dim=cfg.d_model // cfg.heads, slots=self.window,
                                device=context.device, dtype=context.dtype)
        for t in range(t0):
            # The action that led to frame t (frame 0 has none: a learned "first" condition).
            prev = actions[:, t - 1] if t > 0 else actions.new_zeros(b, actions.shape[2])  # (B, k*A)
            self._pass(context[:, t], prev, 0, first=t == 0)
            self.cache.frame += 1

    @torch.inference_mode()
    def step(self, action: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Denoise the frame that ``action`` (B, k*A) leads to; returns its latents (B, C, h, w)."""
        if self.cache is None:
            raise ConfigError("the rollout has no context; call reset(context, actions) before step(action)")
        cfg = self.model.config
        h, w = cfg.grid
        x = torch.randn((action.shape[0], cfg.latent_channels, h, w), generator=generator, device=action.device,
                        dtype=self.cache.k.dtype)  # (B, C, h, w)
        for t in self.scheduler.timesteps:
            eps = self._pass(x, action, int(t), first=False)  # (B, C, h, w)
            x = self.scheduler.step(eps, t, x, eta=0.0).prev_sample  # (B, C, h, w)
        self._pass(x, action, 0, first=False)  # commit the clean frame's keys for the frames after it
        self.cache.frame += 1
        return x
