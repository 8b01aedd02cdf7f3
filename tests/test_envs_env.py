"""WorldModelEnv / WorldModelVectorEnv / WorldModelPolicy on a tiny untrained model."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from _helpers_envs import CHUNK, EMBODIMENT, IMAGE, make_run, make_store
from hma.errors import ConfigError, DataError, EmbodimentError
from hma.sampling.maskgit import MaskGITSampling
from hma.envs import WorldModelEnv, WorldModelPolicy, WorldModelVectorEnv


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("sim") / "toy")


@pytest.fixture(scope="module")
def run(store):
    return make_run(store)


def test_check_env_passes(run):
    env = WorldModelEnv(run, EMBODIMENT, max_episode_steps=4)
    check_env(env, skip_render_check=False)


def test_registered_with_gymnasium(run):
    assert gymnasium.spec("hma/WorldModel-v0").max_episode_steps == 100
    env = gymnasium.make("hma/WorldModel-v0", run=run, embodiment=EMBODIMENT, max_episode_steps=2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (IMAGE, IMAGE, 3) and env.unwrapped.embodiment == EMBODIMENT
    check_env(env.unwrapped)


def test_make_truncates_at_the_max_episode_steps_it_was_given(run):
    # Beyond the env's own default of 100: the TimeLimit of gymnasium.make decides, not the env.
    env = gymnasium.make("hma/WorldModel-v0", run=run, embodiment=EMBODIMENT, max_episode_steps=103)
    env.reset(seed=0)
    action = env.action_space.low
    truncations = [env.step(action)[3] for _ in range(103)]
    assert truncations.index(True) == 102 and env.unwrapped.core.max_episode_steps is None


def test_make_vec_gives_the_batched_env(run):
    venv = gymnasium.make_vec("hma/WorldModel-v0", num_envs=8, run=run, embodiment=EMBODIMENT, max_episode_steps=2)
    assert isinstance(venv, WorldModelVectorEnv) and venv.num_envs == 8
    assert venv.core.max_episode_steps == 2 and venv.metadata["render_fps"] == round(run.model.config.frame_hz)
    assert venv.render_mode is None and venv.render() is None
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (8, IMAGE, IMAGE, 3)
    with pytest.raises(ConfigError, match="reset_mask"):
        venv.reset(options={"reset_mask": np.ones(8, bool)})
    default = gymnasium.make_vec("hma/WorldModel-v0", num_envs=2, run=run, embodiment=EMBODIMENT)
    assert default.core.max_episode_steps == 100  # the spec's limit reaches the vector env


def test_spaces_come_from_the_dataset(run, store):
    env = WorldModelEnv(run, EMBODIMENT)
    assert env.action_space.shape == (CHUNK, 2)
    np.testing.assert_allclose(env.action_space.low[0], store.action_stats["min"])
    np.testing.assert_allclose(env.action_space.high[1], store.action_stats["max"])
    assert env.observation_space.shape == (IMAGE, IMAGE, 3)


def test_step_contract_and_truncation(run):
    assert WorldModelEnv(run, EMBODIMENT).render_mode is None  # gymnasium's default: no rendering asked for
    env = WorldModelEnv(run, EMBODIMENT, max_episode_steps=3, render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (IMAGE, IMAGE, 3)
    truncations = []
    for _ in range(3):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert reward == 0.0 and terminated is False
        truncations.append(truncated)
        np.testing.assert_array_equal(env.render(), obs)
    assert truncations == [False, False, True]


def test_reset_seed_replays_and_actions_matter(run):
    env = WorldModelEnv(run, EMBODIMENT, sampling=MaskGITSampling(temperature=0.0))
    low, high = env.action_space.low, env.action_space.high
    frames = {}
    for name, action in (("low", low), ("high", high), ("low again", low)):
        env.reset(seed=3)
        frames[name] = env.step(action)[0]
    np.testing.assert_array_equal(frames["low"], frames["low again"])
    assert (frames["low"] != frames["high"]).any()


def test_context_options(run, store):
    env = WorldModelEnv(run, EMBODIMENT, context_frames=2)
    ep = store.episode(1)
    frames = np.asarray(ep["frames"][: 2 * CHUNK : CHUNK])
    obs, info = env.reset(options={"context": {"frames": frames, "actions": np.asarray(ep["actions"][:CHUNK])[None]}})
    np.testing.assert_array_equal(obs, frames[-1])
    obs, info = env.reset(options={"context": 0})
    np.testing.assert_array_equal(obs, store.episode(0)["frames"][CHUNK])
    with pytest.raises(DataError, match="no actions"):
        env.reset(options={"context": {"frames": frames}})


def test_pixels_agent_pos_observations_carry_the_state(run, store):
    env = WorldModelEnv(run, EMBODIMENT, context_frames=2, max_episode_steps=4, obs_type="pixels_agent_pos")
    check_env(env)
    assert set(env.observation_space.spaces) == {"pixels", "agent_pos"}
    obs, _ = env.reset(seed=0, options={"context": 1})
    # A context frame's state is the recorded one: frame 1 of episode 1 is control step CHUNK.
    np.testing.assert_array_equal(obs["agent_pos"], store.episode(1)["state"][CHUNK])
    np.testing.assert_array_equal(obs["pixels"], store.episode(1)["frames"][CHUNK])
    states = [env.step(env.action_space.sample())[0]["agent_pos"] for _ in range(3)]
    # Generated frames: what the state head reads out of each, in the state's raw units.
    head = env.core.rollout
    np.testing.assert_array_equal(states[-1], head.states[0])
    assert all(s.shape == (2,) and s.dtype == np.float32 and np.isfinite(s).all() for s in states)
    assert not np.array_equal(states[0], states[1])

    venv = WorldModelVectorEnv(run, EMBODIMENT, 3, max_episode_steps=2, obs_type="pixels_agent_pos")
    obs, _ = venv.reset(seed=0)
    assert obs["pixels"].shape == (3, IMAGE, IMAGE, 3) and obs["agent_pos"].shape == (3, 2)
    obs, *_ = venv.step(venv.action_space.sample())
    assert venv.observation_space.contains(obs)


def test_obs_types_are_checked(run, store):
    with pytest.raises(ConfigError, match="obs_type 'state' is unknown, expected one of: pixels, pixels_agent_pos"):
        WorldModelEnv(run, EMBODIMENT, obs_type="state")
    blind = make_run(store)
    del blind.model.state_heads[EMBODIMENT]  # a model that reads out no state
    with pytest.raises(ConfigError, match="needs a model that reads out a state for 'toy'"):
        WorldModelEnv(blind, EMBODIMENT, obs_type="pixels_agent_pos")
    assert WorldModelEnv(blind, EMBODIMENT).reset(seed=0)[0].shape == (IMAGE, IMAGE, 3)


@pytest.mark.parametrize("action, message", [
    (np.zeros((3, 2), np.float32), r"shape \(3, 2\), expected \(2, 2\)"),
    (np.full((CHUNK, 2), np.nan, np.float32), "NaN or inf"),
    (np.zeros((CHUNK, 2), np.bool_), "dtype bool, expected a float"),
    ("left", "expected a float array"),
])
def test_bad_actions_are_rejected(run, action, message):
    env = WorldModelEnv(run, EMBODIMENT)
    env.reset(seed=0)
    with pytest.raises(EmbodimentError, match=message):
        env.step(action)


def test_out_of_range_clips_or_raises(run):
    clip = WorldModelEnv(run, EMBODIMENT, sampling=MaskGITSampling(temperature=0.0))
    clip.reset(seed=1)
    at_bound = clip.step(clip.action_space.high)[0]
    clip.reset(seed=1)
    beyond = clip.step(clip.action_space.high + 100.0)[0]
    np.testing.assert_array_equal(at_bound, beyond)
    strict = WorldModelEnv(run, EMBODIMENT, out_of_range="raise")
    strict.reset(seed=0)
    with pytest.raises(EmbodimentError, match="expected values in"):
        strict.step(strict.action_space.high + 1.0)


def test_vector_env_steps_eight_in_one_batched_call(run, monkeypatch):
    venv = WorldModelVectorEnv(run, EMBODIMENT, 8, max_episode_steps=2)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (8, IMAGE, IMAGE, 3)
    calls = []
    model = venv.core.rollout.engine.model  # the model generation runs: the run's, or its int8 copy (precision auto)
    original = model.forward_frame
    monkeypatch.setattr(model, "forward_frame", lambda tokens, *a, **k: calls.append(tokens.shape[0]) or original(tokens, *a, **k))
    obs, rewards, terminated, truncated, _ = venv.step(venv.action_space.sample())
    assert obs.shape == (8, IMAGE, IMAGE, 3) and rewards.shape == (8,) and not terminated.any()
    # Every model pass of the step carried all 8 envs: one unmasking pass per step, not per env.
    assert calls and set(calls) == {8} and len(calls) == MaskGITSampling().steps
    with pytest.raises(EmbodimentError, match=r"\(envs, chunk, action_dim\)"):
        venv.step(np.zeros((7, CHUNK, 2), np.float32))
    _, _, _, truncated, _ = venv.step(venv.action_space.sample())
    assert truncated.all()
    obs, rewards, _, truncated, _ = venv.step(venv.action_space.sample())  # next-step autoreset
    assert not truncated.any() and (rewards == 0).all()


def test_long_rollout_keeps_constant_memory(run):
    env = WorldModelEnv(run, EMBODIMENT, max_episode_steps=1000)
    env.reset(seed=0)
    cache = env.core.rollout.engine.cache
    sizes = {sum(t.numel() for t in cache.keys)}
    for _ in range(3 * run.model.config.num_frames):
        env.step(env.action_space.sample())
        sizes.add(sum(t.numel() for t in env.core.rollout.engine.cache.keys))
    assert len(sizes) == 1 and env.core.rollout.engine.cache.length <= run.model.config.num_frames


def test_world_model_policy_predicts_bounded_chunks(run):
    policy = WorldModelPolicy(run, EMBODIMENT)
    policy.reset()
    env = WorldModelEnv(run, EMBODIMENT)
    obs, _ = env.reset(seed=0)
    for _ in range(2 * run.model.config.num_frames):  # past the window: the policy's cache slides too
        action = policy.act(obs)
        assert action.shape == (CHUNK, 2) and env.action_space.contains(action)
        obs, *_ = env.step(action)


def test_run_dataset_is_found_from_another_folder(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hma.run import run_dataset

    store = make_store(tmp_path / "project" / "data" / "toy", episodes=2, length=8)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    relative = SimpleNamespace(config={"train": {"data": ["data/toy"]}}, path=tmp_path / "project" / "run")
    assert run_dataset(relative, EMBODIMENT) == store.root  # relative to the folder holding the run
    resolved = SimpleNamespace(config={"train": {"data": ["gone/toy"], "data_resolved": [str(store.root)]}}, path=None)
    assert run_dataset(resolved, EMBODIMENT) == store.root  # the absolute path recorded at training time
    assert run_dataset(SimpleNamespace(config={"train": {"data": ["gone/toy"]}}, path=None), EMBODIMENT) is None


class _Judge:
    """Stands in for a SuccessClassifier (hma.envs.env.SuccessJudge): a fixed probability per frame of the batch."""

    threshold, min_frames = 0.5, 1

    def __init__(self, probs, embodiment=EMBODIMENT):
        self.probs, self.embodiment = np.asarray(probs, float), embodiment
        self.seen = []

    def predict(self, frames):
        self.seen.append(np.asarray(frames).shape)
        return self.probs[: len(frames)]


def test_success_classifier_gives_reward_and_info_success(run, tmp_path):
    env = WorldModelEnv(run, EMBODIMENT, success=_Judge([0.9]))
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(env.action_space.low)
    assert reward == 1.0 and info["success"] is True and terminated is False
    env = WorldModelEnv(run, EMBODIMENT, success=_Judge([0.1]))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.low)
    assert reward == 0.0 and info["success"] is False
    assert "success" not in WorldModelEnv(run, EMBODIMENT).reset(seed=0)[1]
    judge = _Judge([0.1, 0.8, 0.2, 0.7])
    venv = WorldModelVectorEnv(run, EMBODIMENT, 4, success=judge)
    venv.reset(seed=0)
    _, rewards, _, _, info = venv.step(venv.action_space.sample())
    assert rewards.tolist() == [0.0, 1.0, 0.0, 1.0] and info["success"].tolist() == [False, True, False, True]
    assert judge.seen == [(4, IMAGE, IMAGE, 3)]  # one call for the whole batch
    with pytest.raises(ConfigError, match="success classifier is for 'other'"):
        WorldModelEnv(run, EMBODIMENT, success=_Judge([1.0], embodiment="other"))


def test_success_follows_the_classifiers_episode_rule(run):
    # Two frames in a row above 0.7: the first such frame earns nothing, the second does; reset starts over.
    judge = _Judge([0.8])
    judge.threshold, judge.min_frames = 0.7, 2
    env = WorldModelEnv(run, EMBODIMENT, success=judge)
    for _ in range(2):
        env.reset(seed=0)
        flags = [env.step(env.action_space.low)[4]["success"] for _ in range(3)]
        assert flags == [False, True, True]
    judge.probs = np.asarray([0.6])  # above 0.5 but not above the rule's threshold
    env.reset(seed=0)
    assert [env.step(env.action_space.low)[1] for _ in range(3)] == [0.0, 0.0, 0.0]


def test_success_classifier_loads_from_the_folder_policy_eval_saves(run, tmp_path):
    from hma.eval.success import SuccessClassifier
    from hma.model.cnn import SmallCNN

    SuccessClassifier(SmallCNN(1), (IMAGE, IMAGE), EMBODIMENT).save(tmp_path / "success_classifier")
    env = WorldModelEnv(run, EMBODIMENT, success=tmp_path / "success_classifier")
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.low)
    assert reward == float(info["success"]) and isinstance(info["success"], bool)


@pytest.mark.parametrize("model, setting, tokens", [("diffusion", "full", "continuous"), ("hma", "video", "discrete")])
def test_a_diffusion_baseline_run_and_a_passive_video_run_are_envs(tmp_path, model, setting, tokens):
    from _helpers_train import TINY, make_tokenized

    import hma
    from hma.sampling.ddim import DDIMEngine
    from hma.sampling.engine import Engine
    from hma.train import TrainConfig, train

    datasets, tokenizer = make_tokenized(tmp_path, kind=tokens)
    train(TrainConfig(data=[str(d) for d in datasets], out=str(tmp_path / "run"), tokenizer=str(tokenizer), steps=2,
                      batch_size=2, warmup=1, model=model, setting=setting, progress=False, eval_windows=2,
                      model_overrides={**TINY, "grid": (4, 4)}))
    env = WorldModelEnv(hma.load(tmp_path / "run"), "arm", dataset=datasets[0], max_episode_steps=3)
    check_env(env, skip_render_check=False)
    engine = env.core.rollout.engine
    if model == "diffusion":
        assert isinstance(engine, DDIMEngine)
    else:  # a passive-video run was trained with every action hidden, and is run so
        assert isinstance(engine, Engine) and engine.hide_actions
    env.reset(seed=0)
    frame, *_ = env.step(env.action_space.sample())
    assert frame.shape == env.observation_space.shape
