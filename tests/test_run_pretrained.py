"""The shipped world model: a run packed into the package loads by its short name, with no
path and no download, and the env starts from the episode starts it carries."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _helpers_eval import make_run
from safetensors.torch import load_file

import hma
from hma.errors import CheckpointError, ConfigError
from hma.run import pretrained


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pretrained")
    run, datasets, _ = make_run(tmp)
    shelf = tmp / "shelf"
    pretrained.pack_run(run, shelf / "hma-test", starts=datasets, start_episodes=1, start_steps=5)
    return run, datasets, shelf


def test_a_packed_run_holds_half_weights_that_generate_as_the_run_does(packed):
    run, _, shelf = packed
    weights = load_file(shelf / "hma-test" / "model.safetensors")
    assert all(v.dtype == torch.float16 for v in weights.values() if v.is_floating_point())
    original, shipped = hma.load(run), hma.load(shelf / "hma-test")
    for (name, a), b in zip(original.model.state_dict().items(), shipped.model.state_dict().values()):
        assert torch.allclose(a, b, atol=2e-3, rtol=1e-3), name  # fp16 rounding only
    config = json.loads((shelf / "hma-test" / "config.json").read_text())
    assert config["weights_dtype"] == "float16"
    # The tokenizer's weights and config travel; its training state and logs do not.
    assert sorted(p.name for p in (shelf / "hma-test" / "tokenizer").iterdir()) == ["config.json", "model.safetensors"]
    assert shipped.tokenizer.fingerprint == original.tokenizer.fingerprint


def test_a_shipped_run_loads_by_name_and_its_env_starts_from_its_own_episodes(packed, monkeypatch):
    import gymnasium

    import hma.envs  # noqa: F401 (registers hma/WorldModel-v0)

    _, datasets, shelf = packed
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", shelf)
    assert pretrained.shipped_runs() == ["hma-test"]
    loaded = hma.load("hma-test")
    assert loaded.path == shelf / "hma-test"
    from hma.data.store import EpisodeStore

    source = EpisodeStore(datasets[0]).action_stats
    for d in datasets:  # the training data is gone: contexts come from the shipped starts
        d.rename(d.with_name(d.name + ".away"))
    try:
        env = gymnasium.make("hma/WorldModel-v0", run="hma-test", embodiment="arm")
        obs, _ = env.reset(seed=0)
        assert obs.shape == (16, 16, 3) and obs.dtype == np.uint8
        assert env.unwrapped.core.store.root == pretrained.starts_dataset(shelf / "hma-test", "arm")
        assert env.unwrapped.core.store.num_episodes == 1
        # One short start spans little of the robot's range: the bounds are the whole dataset's.
        assert np.allclose(env.action_space.low, source["min"]) and np.allclose(env.action_space.high, source["max"])
    finally:
        for d in datasets:
            d.with_name(d.name + ".away").rename(d)


def test_packing_refuses_starts_of_an_unknown_robot_and_leaves_the_old_folder(packed, tmp_path):
    from _helpers_train import make_dataset

    run, _, shelf = packed
    other = make_dataset(tmp_path / "other", embodiment="crane", action_dim=2, seed=3, length=10, episodes=3)
    before = sorted(p.name for p in (shelf / "hma-test").rglob("*"))
    with pytest.raises(ConfigError, match="crane"):
        pretrained.pack_run(run, shelf / "hma-test", starts=[other])
    assert sorted(p.name for p in (shelf / "hma-test").rglob("*")) == before
    assert [p.name for p in shelf.iterdir() if p.name.startswith(".")] == []


def test_an_unknown_or_empty_name_is_a_clear_error():
    with pytest.raises((ConfigError, CheckpointError)):
        hma.load("no-such-model-anywhere")
    with pytest.raises(ConfigError, match="empty"):
        hma.load(" ")


def test_a_shipped_runs_recommended_sampling_is_what_eval_and_the_env_use(packed, tmp_path):
    from hma.eval.runner import evaluate
    from hma.sampling.generators import frame_generator

    run, datasets, _ = packed
    folder = pretrained.pack_run(run, tmp_path / "guided", sampling={"action_guidance": 2.0, "logit_adjustment": 0.5})
    loaded = hma.load(folder)
    assert loaded.sampling == {"action_guidance": 2.0, "logit_adjustment": 0.5}
    engine = frame_generator(loaded, "arm")
    weight = loaded.model.config.changed_token_weight
    assert engine.sampling.guidance == 2.0 and engine.sampling.stay_bias == pytest.approx(0.5 * math.log(weight))
    assert frame_generator(loaded, "arm", action_guidance=1.0).sampling.guidance == 1.0  # a caller's choice wins
    options = evaluate(folder, [datasets[0]], tmp_path / "eval", horizon=2, mode="autoregressive", report=False)["options"]
    assert options["action_guidance"] == 2.0 and options["logit_adjustment"] == 0.5
    assert hma.load(run).sampling == {}
