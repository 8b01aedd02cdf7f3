"""Registry of trainable model kinds: ``hma train --model NAME``.

Each kind is built from a :class:`hma.config.ModelConfig` and offers
``loss(batch, generator=...) -> (loss, metrics)``, which is all the training loop uses.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from hma.config import ModelConfig, TokenKind
from hma.errors import ConfigError


def _world_model(config: ModelConfig) -> nn.Module:
    from hma.model import WorldModel

    return WorldModel(config)


def _video_diffusion(config: ModelConfig) -> nn.Module:
    from hma.baselines.diffusion import DiffusionConfig, VideoDiffusion

    if config.kind != TokenKind.CONTINUOUS:
        raise ConfigError("--model diffusion needs a continuous tokenizer (latents), got a discrete one")
    return VideoDiffusion(DiffusionConfig.from_model_config(config))


MODEL_KINDS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "hma": _world_model,  # masked autoregression (MaskGIT or MAR by token kind)
    "diffusion": _video_diffusion,  # the IRASim-style video diffusion baseline
}


def build_model(kind: str, config: ModelConfig) -> nn.Module:
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model kind {kind!r} is unknown, expected one of {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[kind](config)
