"""``hma.load(RUN)``: a finished run, ready for generation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hma.config import EmbodimentSpec, ModelConfig
from hma.errors import CheckpointError, HmaError
from hma.train import checkpoint as ckpt
from hma.train.kinds import build_model


@dataclass
class LoadedRun:
    model: nn.Module  # in eval mode
    tokenizer: object  # hma.tokenizer.Tokenizer
    embodiments: dict[str, EmbodimentSpec]  # name -> spec, incl. .normalizer
    config: dict  # the run's config.json
    path: Path


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as given, else the GPU when there is one, else the CPU."""
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def load(run: str | Path, *, device: str | torch.device = "cpu") -> LoadedRun:
    """Load ``RUN/model.safetensors`` + ``config.json`` and the run's own tokenizer copy, both on ``device``.

    ``run`` is a run folder, or the Hub name (``org/name``) of a repo that holds one
    (:mod:`hma.hub`; a local path of that name wins)."""
    from hma.hub import resolve
    from hma.tokenizer import load_tokenizer

    run = resolve(run, what="run")
    config = ckpt.read_run_config(run)
    model_config, model = _build(run / ckpt.CONFIG_FILE, config)
    ckpt.load_model_weights(model, run / ckpt.MODEL_FILE, sha256=config.get(ckpt.WEIGHTS_SHA256))
    tokenizer = load_tokenizer(run / ckpt.TOKENIZER_DIR)
    for key in ("tokenizer", "train"):
        if not isinstance(config.get(key, {}), dict):
            raise CheckpointError(f"{run / ckpt.CONFIG_FILE} has {key!r} {config[key]!r}, expected a JSON object")
    expected = config.get("tokenizer", {}).get("fingerprint")
    if expected and getattr(tokenizer, "fingerprint", expected) != expected:
        raise CheckpointError(f"{run / ckpt.TOKENIZER_DIR} has weights {tokenizer.fingerprint[:12]}, expected {expected[:12]} as trained")
    return LoadedRun(model=model.to(device).eval(), tokenizer=tokenizer.to(device), embodiments=dict(model_config.embodiments),
                     config=config, path=run)


def _build(config_file: Path, config: dict) -> tuple[ModelConfig, nn.Module]:
    """The model a run's config.json describes; any field that cannot build one is a CheckpointError."""
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{config_file} has no 'model' object, expected a training run's config")
    # A hand-edited or damaged field (a string width, a negative ratio) fails deep inside
    # the model's constructor; the user needs the file, not that traceback.
    try:
        model_config = ModelConfig.from_json(config["model"])
        return model_config, build_model(config.get("kind", "hma"), model_config)
    except HmaError as e:
        raise CheckpointError(f"{config_file}: {e}") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ZeroDivisionError, RuntimeError) as e:
        raise CheckpointError(f"{config_file} does not describe a buildable model ({type(e).__name__}: {e}), "
                              "expected the config.json written by `hma train`") from None
