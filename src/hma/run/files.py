"""The files of a run folder: ``model.safetensors`` + ``config.json`` + ``tokenizer/``.

``config.json`` records the sha256 of ``model.safetensors``, so a run whose weights were
damaged on disk is refused (a flipped bit inside a tensor still parses as safetensors).
Training adds ``training_state/`` (:mod:`hma.train.checkpoint`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from hma.errors import CheckpointError
from hma.io import CONFIG_FILE, read_json, sha256_file, unseal
from hma.io import WEIGHTS_FILE as MODEL_FILE

TOKENIZER_DIR = "tokenizer"
SEEDS_FILE = "seeds.json"
EVAL_FILE = "eval.json"
WEIGHTS_SHA256 = "weights_sha256"  # config.json key: checksum of model.safetensors


def read_run_config(run: Path) -> dict[str, Any]:
    if not (run / MODEL_FILE).is_file():
        raise CheckpointError(f"{run} holds no {MODEL_FILE}, expected a training run folder")
    config = read_json(run / CONFIG_FILE, "run config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{run / CONFIG_FILE} holds {type(config).__name__}, expected a JSON object")
    return unseal(config, run / CONFIG_FILE)


def load_model_weights(model: nn.Module, path: Path, *, strict: bool = True, sha256: str | None = None) -> None:
    """Load ``path`` into ``model``; with ``sha256``, refuse a file whose checksum differs."""
    if sha256 is not None and sha256_file(path) != sha256:
        raise CheckpointError(f"{path} fails the checksum recorded in {path.parent / CONFIG_FILE}: "
                              "the weights or their recorded checksum are corrupt")
    try:
        weights = load_file(path)
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # tensor shapes differ from the ones config.json describes
        first = str(e).strip().splitlines()[-1].strip()
        raise CheckpointError(f"{path} does not fit the model its config.json describes ({first})") from None
    if strict and (missing or unexpected):
        raise CheckpointError(f"{path} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
