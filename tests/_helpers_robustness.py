"""A tiny end-to-end pipeline (dataset -> tokenizer -> tokens -> trained run) made through the
real CLI, and helpers to run the CLI in a subprocess and SIGKILL it mid-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from hma.cli import main as cli_main
from hma.data.store import DatasetInfo, StoreWriter

EMBODIMENT = "square"
IMAGE = 16

# Tiny sizes everywhere: a 16x16 -> 4x4 FSQ tokenizer (64 codes) and a 1-block trunk.
TOKENIZER_ARGS = ["--kind", "discrete", "--downsample", "4", "--channels", "8", "8", "--res-blocks", "1",
                  "--fsq-levels", "4", "4", "4", "--batch-size", "8", "--threads", "1"]
MODEL_CONFIG = dict(num_blocks=1, width=32, num_heads=2, num_frames=4, diffusion_width=32, diffusion_blocks=1,
                    corrupt_max=0.0)
TRAIN_ARGS = ["--batch-size", "4", "--warmup", "2", "--eval-windows", "8", "--no-progress"]


@dataclass
class Pipeline:
    root: Path
    data: Path  # folder of datasets
    dataset: Path  # the one dataset in it
    tokenizer: Path
    model_config: Path  # JSON ModelConfig for `hma train --config`
    run: Path  # a finished training run


def make_dataset(root: Path, *, episodes: int = 6, length: int = 20, seed: int = 0) -> Path:
    """A square pushed around by 2-D actions, 16x16 frames at 10 Hz."""
    rng = np.random.default_rng(seed)
    info = DatasetInfo(embodiment=EMBODIMENT, simulator="procedural", action_names=["dx", "dy"], control_hz=10.0,
                       image_size=(IMAGE, IMAGE))
    writer = StoreWriter(root, info)
    for _ in range(episodes):
        actions = rng.integers(-2, 3, size=(length, 2)).astype(np.float32)
        pos = rng.integers(0, IMAGE - 4, size=2)
        frames = np.zeros((length, IMAGE, IMAGE, 3), np.uint8)
        for t in range(length):
            frames[t, pos[1] : pos[1] + 4, pos[0] : pos[0] + 4] = (240, 80, 30)
            pos = np.clip(pos + actions[t].astype(int), 0, IMAGE - 4)
        writer.add_episode(frames, actions)
    writer.finalize()
    return root


def cli(*args: str) -> None:
    """Run ``hma ARGS`` in this process (the real CLI code path, without a Python start-up)."""
    code = cli_main([str(a) for a in args])
    assert code == 0, f"hma {' '.join(map(str, args))} exited {code}"


def make_pipeline(root: Path, *, train_steps: int = 6) -> Pipeline:
    """Dataset, a tokenizer trained 5 steps, its token shard and a run trained ``train_steps`` steps."""
    import json

    from hma.config import preset

    data = root / "data"
    dataset = make_dataset(data / EMBODIMENT)
    tokenizer = root / "tok"
    cli("tokenizer", "train", "--data", data, "--out", tokenizer, "--steps", 5, "--sample-every", 1000, *TOKENIZER_ARGS)
    cli("tokenize", "--data", data, "--tokenizer", tokenizer, "--threads", 1)
    model_config = root / "model.json"
    model_config.write_text(json.dumps(preset("tiny", **MODEL_CONFIG).to_json()))
    run = root / "run"
    cli("train", "--data", data, "--tokenizer", tokenizer, "--config", model_config, "--out", run,
        "--steps", train_steps, "--checkpoint-every", 2, *TRAIN_ARGS)
    return Pipeline(root=root, data=data, dataset=dataset, tokenizer=tokenizer, model_config=model_config, run=run)


def hma_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "hma.cli", *map(str, args)]


def subprocess_env() -> dict[str, str]:
    # One thread each: the test machine's cores are shared.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def run_hma(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``hma ARGS`` in a fresh process; fails the test with its output unless it exits 0."""
    done = subprocess.run(hma_command(*args), env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"hma {' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def kill_when(args: list[str | Path], ready: Callable[[], bool], *, timeout: float = 300, poll: float = 0.01) -> None:
    """Start ``hma ARGS`` and SIGKILL it as soon as ``ready()`` holds (its visible progress).

    Fails the test if the command finishes (or times out) before ``ready()`` was seen, so
    a kill test can never silently test an uninterrupted run.
    """
    proc = subprocess.Popen(hma_command(*args), env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"hma {' '.join(map(str, args))} exited {proc.returncode} before it could be "
                                     f"killed mid-way:\n{proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"hma {' '.join(map(str, args))} made no visible progress in {timeout} s")
            time.sleep(poll)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
