"""Training checkpoints: a run folder (:mod:`hma.run.files`) plus ``training_state/`` (no pickles).

``training_state/`` holds the optimizer moments (safetensors), the schedule, step and data
position (JSON) and every random generator's state (safetensors), so ``--resume`` continues
exactly. A checkpoint is first written complete into a temporary folder inside the run,
then moved into place file by file with renames; ``step`` is recorded in both
``config.json`` and ``training_state/state.json`` and a resume refuses a pair that disagree
(a crash between two renames). ``config.json`` also records the sha256 of
``model.safetensors``, so :func:`hma.load` refuses weights damaged on disk (a flipped bit
inside a tensor still parses as safetensors).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from hma.errors import CheckpointError
from hma.io import read_json, seal, sha256_file
from hma.run.files import (CONFIG_FILE, EVAL_FILE, MODEL_FILE, SEEDS_FILE, TOKENIZER_DIR, WEIGHTS_SHA256,  # noqa: F401
                            load_model_weights, read_run_config)

STATE_DIR = "training_state"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
EMA_FILE = "ema.safetensors"
RAW_MODEL_FILE = "model_raw.safetensors"  # the un-averaged weights when model.safetensors holds the EMA
STATE_FILE = "state.json"


def _contiguous(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in sd.items()}


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (safetensors) and the rest (JSON)."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return _contiguous(tensors), {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(run: Path, *, model_state: dict[str, Tensor], config: dict[str, Any],
                    state: dict[str, Any], optimizer: torch.optim.Optimizer,
                    rng: dict[str, Tensor], ema: dict[str, Tensor] | None = None,
                    raw_model_state: dict[str, Tensor] | None = None) -> None:
    """Write one complete checkpoint of a run (see the module docstring for the layout)."""
    run.mkdir(parents=True, exist_ok=True)
    tmp = run / f".checkpoint.tmp.{os.getpid()}"
    # Only one process writes a run's checkpoints, so any other temporary folder was left
    # by a writer that was killed mid-save: it never became the checkpoint, remove it.
    for stale in run.glob(".checkpoint.tmp.*"):
        shutil.rmtree(stale, ignore_errors=True)
    (tmp / STATE_DIR).mkdir(parents=True)
    step = int(state["step"])
    save_file(_contiguous(model_state), tmp / MODEL_FILE, metadata={"step": str(step)})
    checksum = sha256_file(tmp / MODEL_FILE)
    (tmp / CONFIG_FILE).write_text(json.dumps(seal({**config, "step": step, WEIGHTS_SHA256: checksum}), indent=2) + "\n")
    opt_tensors, opt_meta = optimizer_to_files(optimizer)
    save_file(opt_tensors, tmp / STATE_DIR / OPTIMIZER_FILE)
    save_file(_contiguous(rng), tmp / STATE_DIR / RNG_FILE)
    if ema is not None:
        save_file(_contiguous(ema), tmp / STATE_DIR / EMA_FILE)
    if raw_model_state is not None:
        save_file(_contiguous(raw_model_state), tmp / STATE_DIR / RAW_MODEL_FILE)
    (tmp / STATE_DIR / STATE_FILE).write_text(json.dumps({**state, "optimizer": opt_meta}, indent=2) + "\n")
    for f in (tmp / MODEL_FILE, tmp / CONFIG_FILE, *(tmp / STATE_DIR).iterdir()):
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    # training_state first (a folder swap), then the model and its config.
    old = run / f".{STATE_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if (run / STATE_DIR).exists():
        os.replace(run / STATE_DIR, old)
    os.replace(tmp / STATE_DIR, run / STATE_DIR)
    os.replace(tmp / MODEL_FILE, run / MODEL_FILE)
    os.replace(tmp / CONFIG_FILE, run / CONFIG_FILE)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


def read_training_state(run: Path) -> dict[str, Any]:
    """The JSON state of the run's last checkpoint, checked against ``config.json``."""
    state = read_json(run / STATE_DIR / STATE_FILE, "training state")
    config_step = read_run_config(run).get("step")
    if config_step != state.get("step"):
        raise CheckpointError(
            f"{run}: {CONFIG_FILE} is at step {config_step} but {STATE_DIR} at step {state.get('step')}; "
            "the last checkpoint was interrupted, expected them equal"
        )
    return state


def load_state_tensors(run: Path, name: str) -> dict[str, Tensor]:
    path = run / STATE_DIR / name
    if not path.is_file():
        raise CheckpointError(f"{path} is missing from the training state")
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None
