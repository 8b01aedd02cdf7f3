"""Frame generators: one ``reset``/``step`` contract over every kind of run.

A :class:`FrameGenerator` takes context frames (B, T0, ...) as token ids or latents and the
T0 - 1 normalized actions taken between them in ``reset``, then returns the frame each
``step(action)`` leads to. :func:`frame_generator` makes the right one for a loaded run:
the world model's :class:`~hma.sampling.engine.Engine` (MaskGIT for token ids, MAR for
latents; a passive-video run sees its actions hidden) or the diffusion baseline's
:class:`~hma.sampling.ddim.DDIMEngine`.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from hma.config import Setting, TokenKind
from hma.errors import ConfigError
from hma.run import LoadedRun
from hma.sampling.engine import CacheMode, Engine
from hma.sampling.mar import MARSampling
from hma.sampling.maskgit import MaskGITSampling
from hma.sampling.precision import PrecisionChoice


class FrameGenerator(Protocol):
    state: Tensor | None  # (B, S) normalized state of the newest frame, None without a state head
    choice: PrecisionChoice  # the precision it generates at, and why

    def reset(self, context: Tensor, actions: Tensor) -> None:
        """Start from context frames (B, T0, ...) and the actions between them (B, T0 - 1, k*A)."""

    def step(self, action: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The frame (B, ...) that ``action`` (B, k*A), taken at the latest frame, leads to."""


def frame_generator(run: LoadedRun, embodiment: str, *, sampling: MaskGITSampling | MARSampling | None = None,
                    unmask_steps: int = 2, temperature: float = 0.0, diffusion_steps: int | None = None,
                    precision: str = "auto", mode: CacheMode = CacheMode.CACHED, compile: bool = False,
                    logit_adjustment: float | None = None, action_guidance: float | None = None) -> FrameGenerator:
    """The generator of ``run`` (what :func:`hma.load` returns, or anything with its ``.model``)
    for ``embodiment``.

    A world model gets an :class:`Engine`: ``sampling`` as given, else MaskGIT (token ids) or
    MAR (latents; ``diffusion_steps`` of its head) with ``unmask_steps`` and ``temperature``;
    a run trained in the passive-video setting sees its actions hidden (a run that records no
    setting is taken as action-conditioned). A diffusion-baseline run gets a :class:`DDIMEngine`
    with ``diffusion_steps`` DDIM steps (``sampling``, ``precision`` and ``compile`` do not apply to it).
    ``precision`` ``auto`` is what this machine runs fastest (:func:`hma.sampling.precision.resolve`).

    For token ids: ``logit_adjustment`` times log(the run's changed-token weight) is the stay
    bias (1 undoes the weight's pull toward change, 0 keeps it) and ``action_guidance`` the
    classifier-free guidance on actions (:class:`MaskGITSampling`); None takes the run's
    recommendation (:func:`adjustments`).
    """
    from hma.baselines.diffusion import VideoDiffusion

    if isinstance(run.model, VideoDiffusion):
        from hma.sampling.ddim import DDIMEngine

        if sampling is not None:
            raise ConfigError(f"a diffusion-baseline run is sampled with DDIM, not {type(sampling).__name__}")
        return DDIMEngine(run.model, embodiment=embodiment, steps=diffusion_steps)
    if sampling is None and run.model.config.kind == TokenKind.DISCRETE:
        stay_bias, guidance = adjustments(run, logit_adjustment, action_guidance)
        sampling = MaskGITSampling(steps=unmask_steps, temperature=temperature, stay_bias=stay_bias, guidance=guidance)
    elif sampling is None:
        extra = {} if diffusion_steps is None else {"diffusion_steps": diffusion_steps}
        sampling = MARSampling(steps=unmask_steps, **extra)
    passive = Setting.parse(run.setting) is Setting.VIDEO
    return Engine(run.model, embodiment=embodiment, mode=mode, sampling=sampling, precision=precision, compile=compile,
                  hide_actions=passive)


def recommended(run: LoadedRun, *, logit_adjustment: float | None = None,
                action_guidance: float | None = None) -> tuple[float, float]:
    """(logit adjustment, action guidance): each as given, else the run's recommendation
    (``LoadedRun.sampling``), else none (0, 1)."""
    rec = run.sampling
    return (float(rec.get("logit_adjustment", 0.0)) if logit_adjustment is None else logit_adjustment,
            float(rec.get("action_guidance", 1.0)) if action_guidance is None else action_guidance)


def adjustments(run: LoadedRun, logit_adjustment: float | None = None,
                action_guidance: float | None = None) -> tuple[float, float]:
    """(stay bias, guidance) of MaskGIT sampling: the logit adjustment (:func:`recommended`)
    times log(the run's changed-token weight), and the action guidance."""
    adjust, guidance = recommended(run, logit_adjustment=logit_adjustment, action_guidance=action_guidance)
    return adjust * math.log(run.model.config.changed_token_weight), guidance
