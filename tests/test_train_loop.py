"""Training runs: resume exactness, fine-tuning, loading, clear errors before any step, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hma
from _helpers_train import TINY, make_dataset, make_tokenized
from hma.data.store import EpisodeStore
from hma.errors import ConfigError, DataError, EmbodimentError
from hma.tokenizer import load_tokenizer, tokenize_dataset
from hma.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("single_thread")


def _config(data, out, tok=None, **changes) -> TrainConfig:
    fields = dict(data=[str(d) for d in data], out=str(out), tokenizer=str(tok) if tok else None, steps=6,
                  batch_size=2, warmup=2, lr=3e-3, model_overrides=dict(TINY), progress=False, eval_windows=8)
    return TrainConfig(**{**fields, **changes})


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    return make_tokenized(tmp_path_factory.mktemp("tokenized"), embodiments={"arm": 2, "cart": 3})


def test_resumed_run_equals_uninterrupted_run(tokenized, tmp_path: Path) -> None:
    data, tok = tokenized
    result = train(_config(data, tmp_path / "straight", tok, ema=0.9))
    train(_config(data, tmp_path / "cut", tok, ema=0.9, stop_at=3))
    assert not (tmp_path / "cut" / "eval.json").exists()
    train(_config(data, tmp_path / "cut", tok, ema=0.9, resume=True))
    for name in ("model.safetensors", "training_state/model_raw.safetensors"):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "cut" / name)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    assert result["step"] == 6 and result["perplexity"] > 1 and result["unigram_perplexity"] > 1
    run = tmp_path / "straight"
    assert (run / "tokenizer" / "config.json").is_file() and (run / "seeds.json").is_file()
    assert not list(run.glob(".checkpoint.tmp*"))


def test_finetune_adds_embodiment_and_freezes_trunk(tokenized, tmp_path: Path) -> None:
    data, tok = tokenized
    train(_config(data[:1], tmp_path / "pre", tok))
    train(_config(data, tmp_path / "ft", init_from=str(tmp_path / "pre"), freeze_trunk=True))
    loaded = hma.load(tmp_path / "ft")
    assert set(loaded.embodiments) == {"arm", "cart"} and loaded.tokenizer.name == "tok"
    assert loaded.embodiments["cart"].normalizer.mean.shape == (3,)
    before, after = load_file(tmp_path / "pre" / "model.safetensors"), load_file(tmp_path / "ft" / "model.safetensors")
    trunk = [k for k in before if not k.startswith(("stems.", "heads."))]
    assert trunk and all(torch.equal(before[k], after[k]) for k in trunk)
    assert not torch.equal(before["stems.arm.0.weight"], after["stems.arm.0.weight"])
    assert "stems.cart.0.weight" in after


def test_a_finetune_may_change_the_objective_and_nothing_else(tokenized, tmp_path: Path) -> None:
    data, tok = tokenized
    train(_config(data[:1], tmp_path / "pre", tok))
    train(_config(data[:1], tmp_path / "ft", init_from=str(tmp_path / "pre"),
                  model_overrides={"visible_past": 0.5, "action_dropout": 0.1}))
    model = json.loads((tmp_path / "ft" / "config.json").read_text())["model"]
    assert model["visible_past"] == 0.5 and model["action_dropout"] == 0.1
    with pytest.raises(ConfigError, match="num_blocks cannot change"):
        train(_config(data[:1], tmp_path / "ft2", init_from=str(tmp_path / "pre"), model_overrides={"num_blocks": 1}))


def test_a_run_on_data_with_a_state_trains_a_state_head(tokenized, tmp_path: Path) -> None:
    from hma.data.windows import split_episodes

    _, tok = tokenized
    data = make_dataset(tmp_path / "arm_state", embodiment="arm", action_dim=2, state=("x", "y"), episodes=12)
    tokenize_dataset(EpisodeStore(data), load_tokenizer(tok), progress=False)
    result = train(_config([data], tmp_path / "run", tok, steps=200, batch_size=8, setting="full", eval_windows=32,
                           model_overrides={**TINY, "state_loss_weight": 1.0}))
    loaded = hma.load(tmp_path / "run")
    spec = loaded.embodiments["arm"]
    store = EpisodeStore(data)
    trained = split_episodes(store.num_episodes)[0]
    positions = store.state[: store.episode_starts[trained[-1] + 1]]  # the training episodes come first
    assert spec.state_names == ["x", "y"] and "arm" in loaded.model.state_heads
    assert spec.state_mean == pytest.approx(positions.mean(0).tolist(), abs=1e-4)
    # Held-out read-out error (normalized units) well below the training mean's on the same frames.
    assert 0 < result["heldout_state_mse"] < 0.75 * result["heldout_state_mse_of_mean"], result
    # Fine-tuning on another state for the same robot is refused before any step.
    other = make_dataset(tmp_path / "arm_other", embodiment="arm", action_dim=2, state=("u", "v"), seed=3)
    tokenize_dataset(EpisodeStore(other), load_tokenizer(tok), progress=False)
    with pytest.raises(EmbodimentError, match="records a state of 2 values in the data, expected the 2 values"):
        train(_config([other], tmp_path / "ft", init_from=str(tmp_path / "run")))
    assert not (tmp_path / "ft").exists()


def test_data_from_another_tokenizer_is_refused_before_training(tokenized, tmp_path: Path) -> None:
    data, _ = tokenized
    other = make_tokenized(tmp_path / "other", embodiments={"arm": 2}, seed=7)[1]  # same name, other weights
    with pytest.raises(DataError, match="only other tokenizers named 'tok' have shards here"):
        train(_config(data, tmp_path / "run", other))
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_resume_refuses_other_data_or_settings_and_leaves_the_run_as_it_was(tokenized, tmp_path: Path, capsys) -> None:
    data, tok = tokenized
    run = tmp_path / "run"
    train(_config(data[:1], run, tok, stop_at=2))
    recorded = {name: (run / name).read_bytes() for name in ("config.json", "model.safetensors", "seeds.json")}
    refused = [(dict(data=data[1:]), f"--data {data[1]} differs from the run's data {data[0]}; resume with the run's data"),
               (dict(data=data), "--data .* differs from the run's data"),
               (dict(setting="video"), "--setting video differs from the run's setting forward; resume with the run's settings"),
               (dict(lr=1e-3), "--lr 0.001 differs from the run's lr 0.003"),
               (dict(batch_size=4), "--batch-size 4 differs from the run's batch-size 2"),
               (dict(steps=8), "--steps 8 differs from the run's steps 6"),
               (dict(ema=0.9), "--ema 0.9 differs from the run's ema none"),
               (dict(num_frames=8), "--num-frames 8 differs from the run's num-frames 4"),
               (dict(preset="micro"), "--preset micro differs from the run's preset demo"),
               (dict(model_overrides={**TINY, "action_dropout": 0.3}),
                "--action-dropout 0.3 differs from the run's action-dropout 0.0"),
               (dict(model_overrides={**TINY, "corrupt_max": 0.5}),
                "--context-corruption 0.5 differs from the run's context-corruption 0.2")]
    for changes, message in refused:
        with pytest.raises(ConfigError, match=message):
            given = {"data": data[:1], **changes}
            train(_config(given.pop("data"), run, resume=True, **given))
        assert {name: (run / name).read_bytes() for name in recorded} == recorded, changes
    from hma.cli import main

    assert main(["train", "--data", str(data[1]), "--out", str(run), "--steps", "6", "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == f"hma: error: --data {data[1]} differs from the run's data {data[0]}; resume with the run's data or start a new run\n"
    assert {name: (run / name).read_bytes() for name in recorded} == recorded
    # The same data named another way, and what a resume may change (when to stop, how often to save).
    relative = os.path.relpath(data[0])
    train(_config([relative], run, resume=True, num_frames=4, checkpoint_every=3, eval_every=0))
    assert json.loads((run / "config.json").read_text())["step"] == 6


def test_unknown_embodiment_and_wrong_action_size_are_refused(tokenized, tmp_path: Path) -> None:
    data, tok = tokenized
    train(_config(data[:1], tmp_path / "run", tok, steps=2))
    # The run's data folder gained a dataset of another robot since: resuming on it is refused.
    folder = tmp_path / "folder"
    shutil.copytree(data[0], folder / "arm")
    train(_config([folder], tmp_path / "grown", tok, steps=2))
    shutil.copytree(data[1], folder / "cart")
    with pytest.raises(EmbodimentError, match="'cart' in the data is unknown"):
        train(_config([folder], tmp_path / "grown", steps=2, resume=True))
    # Same embodiment name, another action size.
    wrong = make_dataset(tmp_path / "wrong" / "arm", embodiment="arm", action_dim=5)
    tokenize_dataset(EpisodeStore(wrong), load_tokenizer(tok), progress=False)
    with pytest.raises(EmbodimentError, match="'arm' has 5 action values per frame .* expected 2"):
        train(_config([wrong], tmp_path / "ft", init_from=str(tmp_path / "run")))
    assert not (tmp_path / "ft" / "model.safetensors").exists()


def test_hma_train_cli_prints_perplexities(tokenized, tmp_path: Path, capsys) -> None:
    from hma.cli import main

    data, tok = tokenized
    config = tmp_path / "model.json"
    config.write_text(__import__("json").dumps(hma.config.preset("tiny", **TINY).to_json()))
    code = main(["train", "--config", str(config), "--data", *map(str, data), "--tokenizer", str(tok),
                 "--out", str(tmp_path / "run"), "--steps", "3", "--batch-size", "2", "--no-progress",
                 "--injection", "concat+add", "--setting", "mixed", "--eval-windows", "4", "--num-blocks", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "held-out perplexity" in printed
    assert "next-frame tokens right on held-out windows" in printed and "on training windows" in printed
    result = __import__("json").loads((tmp_path / "run" / "eval.json").read_text())
    for split in ("", "train_"):
        assert 0 <= result[f"{split}token_accuracy_all"] <= 1 and result[f"{split}token_accuracy_tokens"] > 0
    written = __import__("json").loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert written["num_blocks"] == 1 and written["injection"] == "concat+add"
    assert main(["train", "--preset", "tiny", "--data", str(data[0]), "--tokenizer", str(tok),
                 "--out", str(tmp_path / "run"), "--steps", "3"]) == 2  # folder holds a model: clear error


_RANK_SCRIPT = """
import sys, torch
from safetensors.torch import save_file
from hma.train import TrainConfig, train
import hma.train.loop as loop
captured = {}
original = loop.build_model
def capture(kind, config):
    captured["model"] = original(kind, config)
    return captured["model"]
loop.build_model = capture
torch.set_num_threads(1)
data, tok, out = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
train(TrainConfig(data=data, out=out, tokenizer=tok, steps=4, batch_size=2, warmup=2, lr=3e-3,
                  model_overrides=dict(num_blocks=1, width=32, num_heads=2, num_frames=4), progress=False, eval_windows=4))
rank = torch.distributed.get_rank()
save_file({k: v.contiguous() for k, v in captured["model"].state_dict().items()}, f"{out}/rank{rank}.safetensors")
"""


@pytest.mark.slow
def test_torchrun_two_processes_hold_identical_weights(tokenized, tmp_path: Path) -> None:
    data, tok = tokenized
    script = tmp_path / "rank.py"
    script.write_text(textwrap.dedent(_RANK_SCRIPT))
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([torchrun, "--nproc_per_node=2", "--master_port=29517", str(script), ",".join(map(str, data)), str(tok),
                    str(tmp_path / "run")], check=True, env=env, timeout=300)
    a, b = load_file(tmp_path / "run" / "rank0.safetensors"), load_file(tmp_path / "run" / "rank1.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    saved = load_file(tmp_path / "run" / "model.safetensors")
    assert all(torch.equal(a[k], saved[k]) for k in a)
    assert __import__("json").loads((tmp_path / "run" / "seeds.json").read_text())["rank_seeds"] == [0, 1]


def test_precision_is_bf16_where_asked_or_on_cuda_and_unknown_ones_are_refused() -> None:
    from hma.train.loop import _use_bf16

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not _use_bf16("auto", cpu) and _use_bf16("auto", cuda)
    assert _use_bf16("bf16", cpu) and not _use_bf16("fp32", cuda)
    with pytest.raises(ConfigError, match="fp16"):
        _use_bf16("fp16", cpu)


def test_periodic_heldout_metrics_and_sample_video_leave_training_unchanged(tokenized, tmp_path: Path) -> None:
    import imageio.v3 as iio
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data, tok = tokenized
    train(_config(data, tmp_path / "quiet", tok, eval_every=0))
    train(_config(data, tmp_path / "watched", tok, eval_every=2))
    a, b = load_file(tmp_path / "quiet" / "model.safetensors"), load_file(tmp_path / "watched" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)
    samples = sorted(p.name for p in (tmp_path / "watched" / "samples").iterdir())
    assert samples == ["step_0000002.gif", "step_0000004.gif"] and not (tmp_path / "quiet" / "samples").exists()
    video = iio.imread(tmp_path / "watched" / "samples" / "step_0000004.gif", index=None)
    t, h, w = video.shape[:3]
    assert t == TINY["num_frames"] and w == 2 * h  # real | generated, a whole window
    events = EventAccumulator(str(tmp_path / "watched" / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("heldout/perplexity")] == [2, 4]
    assert "samples/real_vs_generated" in events.Tags()["images"]


def test_timed_run_replans_when_its_first_steps_were_slow(tokenized, tmp_path: Path, monkeypatch) -> None:
    """The first 20 steps take 1 s each (e.g. beside another job), the rest 0.5 s: a 2-minute
    budget then holds about 220 steps, not the 120 the first estimate gives."""
    import types

    import hma.train.state as budget_module  # where Budget reads its clock

    clock = {"now": 0.0, "steps": 0}
    original = torch.optim.AdamW.step

    def timed_step(self, *args, **kwargs):
        clock["steps"] += 1
        clock["now"] += 1.0 if clock["steps"] <= 20 else 0.5
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", timed_step)
    monkeypatch.setattr(budget_module, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    data, tok = tokenized
    train(_config(data, tmp_path / "timed", tok, steps=None, minutes=2.0, eval_every=0))
    state = json.loads((tmp_path / "timed" / "training_state" / "state.json").read_text())
    # 20 s of slow steps, then 100 s at 0.5 s: 20 + 200 = 220 steps (the first plan: 20 + 100 / 1.0 = 120).
    assert 200 <= state["step"] <= 225 and state["total_steps"] == state["step"]


def test_snapshot_steps_keep_loadable_runs_of_those_steps(tokenized, tmp_path: Path) -> None:
    import hma
    from hma.train import checkpoint as ckpt

    data, tok = tokenized
    run = tmp_path / "run"
    train(_config(data, run, tok, steps=4, checkpoint_every=2, snapshot_steps=(2, 4)))
    for step in (2, 4):
        snap = ckpt.snapshot_path(run, step)
        assert hma.load(snap).config["step"] == step
    final = hma.load(run).model.state_dict()
    assert all(torch.equal(v, final[k]) for k, v in hma.load(ckpt.snapshot_path(run, 4)).model.state_dict().items())
    assert not all(torch.equal(v, final[k]) for k, v in hma.load(ckpt.snapshot_path(run, 2)).model.state_dict().items())
    with pytest.raises(ConfigError, match="snapshot step 3"):
        train(_config(data, tmp_path / "other", tok, steps=4, checkpoint_every=2, snapshot_steps=(3,)))
