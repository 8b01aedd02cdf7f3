"""``hma.load(RUN)``: a finished run, ready for generation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hma.config import EmbodimentSpec, ModelConfig
from hma.errors import CheckpointError
from hma.train import checkpoint as ckpt
from hma.train.kinds import build_model


@dataclass
class LoadedRun:
    model: nn.Module  # in eval mode
    tokenizer: object  # hma.tokenizer.Tokenizer
    embodiments: dict[str, EmbodimentSpec]  # name -> spec, incl. .normalizer
    config: dict  # the run's config.json
    path: Path


def load(run: str | Path, *, device: str | torch.device = "cpu") -> LoadedRun:
    """Load ``RUN/model.safetensors`` + ``config.json`` and the run's own tokenizer copy."""
    from hma.tokenizer import load_tokenizer

    run = Path(run)
    config = ckpt.read_run_config(run)
    if "model" not in config:
        raise CheckpointError(f"{run / ckpt.CONFIG_FILE} has no 'model' section, expected a training run's config")
    model_config = ModelConfig.from_json(config["model"])
    model = build_model(config.get("kind", "hma"), model_config)
    ckpt.load_model_weights(model, run / ckpt.MODEL_FILE)
    tokenizer = load_tokenizer(run / ckpt.TOKENIZER_DIR)
    expected = config.get("tokenizer", {}).get("fingerprint")
    if expected and getattr(tokenizer, "fingerprint", expected) != expected:
        raise CheckpointError(f"{run / ckpt.TOKENIZER_DIR} has weights {tokenizer.fingerprint[:12]}, expected {expected[:12]} as trained")
    return LoadedRun(model=model.to(device).eval(), tokenizer=tokenizer, embodiments=dict(model_config.embodiments),
                     config=config, path=run)
