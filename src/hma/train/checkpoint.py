"""Training checkpoints: a weights folder (``model.safetensors`` + ``config.json``) plus
``training_state/`` (no pickles), written by every trainer of hma.

``training_state/`` holds :meth:`TrainState.files <hma.train.state.TrainState.files>`: the
optimizer moments, the random generators and (with EMA) the averaged and raw weights as
safetensors, the step, schedule and the trainer's own fields in ``state.json``, with the
sha256 of the ``model.safetensors`` it belongs to.

A save is a journal that survives a kill at any moment: the complete checkpoint is first
written into ``.checkpoint.tmp.PID/`` inside the folder and synced, then marked ready, then
moved into place file by file with renames. Before a run starts (and before a resume reads
its state) :func:`finish_interrupted` rolls a ready checkpoint forward and removes one that
never became ready, so a folder always holds one consistent checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from safetensors.torch import load_file, save_file
from torch import Tensor

from hma.errors import CheckpointError
from hma.io import read_json, seal, sha256_file
from hma.run.files import (CONFIG_FILE, EVAL_FILE, MODEL_FILE, SEEDS_FILE, TOKENIZER_DIR, WEIGHTS_SHA256,  # noqa: F401
                            load_model_weights, read_run_config)

STATE_DIR = "training_state"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
EMA_FILE = "ema.safetensors"
RAW_MODEL_FILE = "model_raw.safetensors"  # the un-averaged weights when model.safetensors holds the EMA
READY = "READY"
_TMP = ".checkpoint.tmp."
_OLD = f".{STATE_DIR}.old"


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _roll_forward(folder: Path, tmp: Path) -> None:
    """Move a ready checkpoint's files into place; each move may already have happened."""
    old = folder / _OLD
    if (tmp / STATE_DIR).exists():
        if (folder / STATE_DIR).exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder / STATE_DIR, old)
        os.replace(tmp / STATE_DIR, folder / STATE_DIR)
    for name in (MODEL_FILE, CONFIG_FILE):  # the weights before the config that names their checksum
        if (tmp / name).exists():
            os.replace(tmp / name, folder / name)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


def finish_interrupted(folder: Path) -> None:
    """Complete a checkpoint killed while moving into place; discard one killed while being written."""
    for tmp in sorted(folder.glob(_TMP + "*")):
        if (tmp / READY).is_file():
            _roll_forward(folder, tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    old = folder / _OLD
    if old.exists() and not (folder / STATE_DIR).exists():
        os.replace(old, folder / STATE_DIR)  # killed between the two renames of the state folder
    shutil.rmtree(old, ignore_errors=True)


def write_checkpoint(folder: Path, *, weights: bytes, config: dict[str, Any], tensors: dict[str, dict[str, Tensor]],
                     state: dict[str, Any], config_checksum: bool = True) -> None:
    """Write one complete checkpoint into ``folder`` (see the module docstring).

    ``weights``: the serialized ``model.safetensors``; ``config``: its ``config.json`` (sealed
    here, with the weights' sha256 under ``weights_sha256`` when ``config_checksum``);
    ``tensors``/``state``: the training state (:meth:`TrainState.files`, plus the trainer's
    own JSON fields).
    """
    folder.mkdir(parents=True, exist_ok=True)
    finish_interrupted(folder)  # only one process writes a folder's checkpoints
    tmp = folder / f"{_TMP}{os.getpid()}"
    (tmp / STATE_DIR).mkdir(parents=True)
    (tmp / MODEL_FILE).write_bytes(weights)
    checksum = sha256_file(tmp / MODEL_FILE)
    if config_checksum:
        config = {**config, WEIGHTS_SHA256: checksum}
    (tmp / CONFIG_FILE).write_text(json.dumps(seal(config), indent=2) + "\n")
    for name, values in tensors.items():
        save_file(values, tmp / STATE_DIR / f"{name}.safetensors")
    (tmp / STATE_DIR / STATE_FILE).write_text(json.dumps({**state, "model_sha256": checksum}, indent=2) + "\n")
    for f in (tmp / MODEL_FILE, tmp / CONFIG_FILE, *(tmp / STATE_DIR).iterdir()):
        _fsync(f)
    (tmp / READY).write_text("")
    _fsync(tmp / READY)
    _roll_forward(folder, tmp)


def read_training_state(folder: Path, *, config_step: bool = True) -> dict[str, Any]:
    """The JSON state of the folder's last checkpoint, checked against the weights beside it
    (and, for a world-model run, against the step in ``config.json``). Call
    :func:`finish_interrupted` first (one process of a distributed run)."""
    state = read_json(folder / STATE_DIR / STATE_FILE, "training state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{folder / STATE_DIR / STATE_FILE} holds {type(state).__name__}, expected a JSON object")
    weights = folder / MODEL_FILE
    if "model_sha256" in state and (not weights.is_file() or sha256_file(weights) != state["model_sha256"]):
        raise CheckpointError(f"{folder}: {MODEL_FILE} is not the one {STATE_DIR} was saved with; the last "
                              "checkpoint was interrupted or edited, expected the pair one save wrote")
    if config_step:
        step = read_run_config(folder).get("step")
        if step != state.get("step"):
            raise CheckpointError(
                f"{folder}: {CONFIG_FILE} is at step {step} but {STATE_DIR} at step {state.get('step')}; "
                "the last checkpoint was interrupted, expected them equal"
            )
    return state


def state_tensors(folder: Path, device: str = "cpu") -> Callable[[str], dict[str, Tensor]]:
    """A reader of the folder's training-state safetensors files by name (``"optimizer"``, ``"rng"``, ...)."""

    def read(name: str) -> dict[str, Tensor]:
        path = folder / STATE_DIR / f"{name}.safetensors"
        if not path.is_file():
            raise CheckpointError(f"{path} is missing from the training state")
        try:
            return load_file(path, device=device)
        except Exception as e:  # safetensors raises its own error types for truncated files
            raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None

    return read


SNAPSHOTS_DIR = "snapshots"


def snapshot_path(folder: Path, step: int) -> Path:
    return folder / SNAPSHOTS_DIR / f"step_{step:07d}"


def write_snapshot(folder: Path, step: int) -> Path:
    """Keep the run's current weights, config and tokenizer as a loadable run of their own,
    ``RUN/snapshots/step_N`` (built beside it and renamed into place)."""
    out = snapshot_path(folder, step)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (MODEL_FILE, CONFIG_FILE):
        shutil.copy2(folder / name, tmp / name)
    shutil.copytree(folder / TOKENIZER_DIR, tmp / TOKENIZER_DIR)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out
