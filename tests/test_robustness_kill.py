"""SIGKILL the real CLI once it has made visible progress; re-running the same command
resumes and gives the result an uninterrupted run gives. Nothing half-written looks complete.

Slow (each test starts `hma` subprocesses): run with `make test-slow`.
"""

import json
import shutil

import numpy as np
import pytest

import hma
from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter
from hma.errors import CheckpointError, DataError
from hma.io import sha256_file
from hma.tokenizer import load_tokenizer
from hma.tokenizer.shards import open_token_shard, shard_path, tokenize_dataset

from _helpers_robustness import EMBODIMENT, TRAIN_ARGS, cli, kill_when, make_pipeline, run_hma

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return make_pipeline(tmp_path_factory.mktemp("pipeline"))


def _staged(partial):
    return len(list((partial / "episodes").glob("*.npz"))) if (partial / "episodes").is_dir() else 0


def _same_dataset(a, b):
    for name in ("frames.npy", "actions.npy", "episode_starts.npy"):
        assert sha256_file(a / name) == sha256_file(b / name), name


def test_kill_data_generate_then_resume(tmp_path):
    out = tmp_path / "suite"
    args = ["data", "generate", "--suite", "tiny", "--embodiments", "pusht", "--episodes", 24, "--image-size", 16,
            "--out", out]
    partial = out / "pusht.partial"
    kill_when(args, lambda: _staged(partial) >= 2)
    # Killed: only the staging folder exists, and the reader refuses to open anything as the dataset.
    assert not (out / "pusht" / "metadata.json").exists() and 2 <= _staged(partial) < 24
    with pytest.raises(DataError):
        EpisodeStore(out / "pusht")
    run_hma(*args)
    store = EpisodeStore(out / "pusht", verify=True)
    assert store.num_episodes == 24 and not partial.exists()
    cli("data", "generate", "--suite", "tiny", "--embodiments", "pusht", "--episodes", 24, "--image-size", 16,
        "--out", tmp_path / "uninterrupted")
    _same_dataset(out / "pusht", tmp_path / "uninterrupted" / "pusht")


def _long_dataset(root, frames=3 * 4096 + 100):
    """Enough frames for several of `hma tokenize`'s 4096-frame chunks (its resume points)."""
    rng = np.random.default_rng(0)
    info = DatasetInfo(embodiment=EMBODIMENT, simulator="procedural", action_names=["dx", "dy"], control_hz=10.0,
                       image_size=(16, 16))
    writer = StoreWriter(root, info)
    for length in (frames // 2, frames - frames // 2):
        writer.add_episode(rng.integers(0, 256, size=(length, 16, 16, 3), dtype=np.uint8),
                           rng.normal(size=(length, 2)).astype(np.float32))
    return writer.finalize()


def test_kill_tokenize_then_resume(pipeline, tmp_path):
    store = _long_dataset(tmp_path / "data" / EMBODIMENT)
    final = shard_path(store, load_tokenizer(pipeline.tokenizer))  # tokens/tok-<identity>
    partial = final.with_name(final.name + ".partial")
    args = ["tokenize", "--data", tmp_path / "data", "--tokenizer", pipeline.tokenizer, "--threads", 1]
    kill_when(args, lambda: (partial / "progress.json").exists())
    done = json.loads((partial / "progress.json").read_text())["done"]
    assert 0 < done < store.num_frames and not final.exists()
    with pytest.raises(DataError, match="unfinished run left a .partial folder"):
        open_token_shard(store, "tok")
    run_hma(*args)
    shard = open_token_shard(store, load_tokenizer(pipeline.tokenizer), verify=True)
    assert not partial.exists() and shard.array.shape[0] == store.num_frames
    # The resumed shard equals one made without interruption.
    fresh = tmp_path / "fresh"
    shutil.copytree(store.root, fresh, ignore=shutil.ignore_patterns("tokens"))
    expected, _ = tokenize_dataset(EpisodeStore(fresh), load_tokenizer(pipeline.tokenizer), progress=False)
    np.testing.assert_array_equal(shard.array, expected.array)


def _config_step(run):
    try:
        return json.loads((run / "config.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return 0


def test_kill_train_then_resume(pipeline, tmp_path):
    run = tmp_path / "run"
    # --resume on a new folder starts it, so the very same command is re-run after the kill.
    args = ["train", "--data", pipeline.data, "--tokenizer", pipeline.tokenizer, "--config", pipeline.model_config,
            "--out", run, "--steps", 16, "--checkpoint-every", 2, "--resume", *TRAIN_ARGS]
    kill_when(args, lambda: _config_step(run) >= 4)
    step = _config_step(run)
    assert 4 <= step < 16 and not (run / "eval.json").exists()
    # What the kill left is a complete checkpoint: it loads and its weights pass their checksum.
    hma.load(run)
    state = json.loads((run / "training_state" / "state.json").read_text())
    assert state["step"] == step
    (run / ".checkpoint.tmp.999999").mkdir(exist_ok=True)  # as a writer killed mid-save leaves it
    run_hma(*args)
    assert _config_step(run) == 16 and json.loads((run / "eval.json").read_text())["step"] == 16
    assert not list(run.glob(".checkpoint.tmp.*")), "a dead writer's temporary checkpoint folder was left behind"
    # Resuming restores weights, optimizer, schedule, data position and random state: the
    # result is the uninterrupted run's.
    cli("train", "--data", pipeline.data, "--tokenizer", pipeline.tokenizer, "--config", pipeline.model_config,
        "--out", tmp_path / "uninterrupted", "--steps", 16, "--checkpoint-every", 2, *TRAIN_ARGS)
    resumed, uninterrupted = hma.load(run).model.state_dict(), hma.load(tmp_path / "uninterrupted").model.state_dict()
    for name, value in uninterrupted.items():
        np.testing.assert_allclose(resumed[name].numpy(), value.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_kill_synth_then_resume(pipeline, tmp_path):
    out = tmp_path / "synth"
    partial = out.with_name("synth.partial")
    args = ["synth", "--run", pipeline.run, "--embodiment", EMBODIMENT, "--episodes", 24, "--frames", 4,
            "--out", out]
    kill_when(args, lambda: _staged(partial) >= 1)
    assert 1 <= _staged(partial) < 24 and not (out / "metadata.json").exists()
    with pytest.raises(DataError):
        EpisodeStore(out)
    run_hma(*args)
    store = EpisodeStore(out, verify=True)
    assert store.num_episodes == 24 and not partial.exists()
    cli("synth", "--run", pipeline.run, "--embodiment", EMBODIMENT, "--episodes", 24, "--frames", 4,
        "--out", tmp_path / "uninterrupted")
    _same_dataset(out, tmp_path / "uninterrupted")


def test_kill_leaves_no_complete_looking_checkpoint_during_the_first_save(pipeline, tmp_path):
    # Killed before its first checkpoint, a run folder holds no model.safetensors: hma.load
    # says so instead of loading something partial.
    run = tmp_path / "run"
    args = ["train", "--data", pipeline.data, "--tokenizer", pipeline.tokenizer, "--config", pipeline.model_config,
            "--out", run, "--steps", 400, "--checkpoint-every", 400, "--resume", *TRAIN_ARGS]
    kill_when(args, lambda: (run / "seeds.json").exists())
    if not (run / "model.safetensors").exists():
        with pytest.raises(CheckpointError, match="holds no model.safetensors"):
            hma.load(run)
    run_hma(*args, "--stop-at", 2)
    assert _config_step(run) == 2
