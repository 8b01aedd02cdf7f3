"""The env's conventions at its boundary: a Box of (action_dim,) for a robot with one control
step per frame (as gym-pusht and LeRobot's envs), integer actions taken as floats, and reset
contexts that are not this robot's refused with one line."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from _helpers_envs import CHUNK, EMBODIMENT, IMAGE, make_run, make_store
from hma.errors import ConfigError, DataError
from hma.sampling.maskgit import MaskGITSampling
from hma.envs import WorldModelEnv, WorldModelPolicy, WorldModelVectorEnv


pytestmark = pytest.mark.usefixtures("single_thread")
GREEDY = MaskGITSampling(temperature=0.0)  # a frame is a function of the context and the action


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("conv") / "toy")


@pytest.fixture(scope="module")
def run1(store):
    return make_run(store, chunk=1)


def test_a_chunk_of_one_is_a_box_of_action_dim(run1, store):
    env = WorldModelEnv(run1, EMBODIMENT, max_episode_steps=3)
    assert env.action_space.shape == (2,)
    np.testing.assert_allclose(env.action_space.low, store.action_stats["min"])
    check_env(env)
    made = gymnasium.make("hma/WorldModel-v0", run=run1, embodiment=EMBODIMENT)
    assert made.action_space.shape == (2,)
    venv = WorldModelVectorEnv(run1, EMBODIMENT, 3, max_episode_steps=2)
    assert venv.single_action_space.shape == (2,) and venv.action_space.shape == (3, 2)
    venv.reset(seed=0)
    assert venv.step(venv.action_space.sample())[0].shape == (3, IMAGE, IMAGE, 3)
    policy = WorldModelPolicy(run1, EMBODIMENT)
    policy.reset()
    action = policy.act(env.reset(seed=0)[0])
    assert action.shape == (2,) and env.action_space.contains(action)


def test_a_chunk_of_one_takes_both_layouts_alike(run1):
    env = WorldModelEnv(run1, EMBODIMENT, sampling=GREEDY)
    action = np.array([1.5, -0.5], np.float32)
    env.reset(seed=2)
    flat = env.step(action)[0]
    env.reset(seed=2)
    chunked = env.step(action[None])[0]  # (1, A): the chunk layout of older callers
    np.testing.assert_array_equal(flat, chunked)
    venv = WorldModelVectorEnv(run1, EMBODIMENT, 2, max_episode_steps=5)
    venv.reset(seed=0)
    assert venv.step(np.zeros((2, 1, 2), np.float32))[0].shape == (2, IMAGE, IMAGE, 3)


@pytest.mark.parametrize("chunk", [1, CHUNK])
def test_integer_actions_are_cast_to_float(store, chunk):
    env = WorldModelEnv(make_run(store, chunk=chunk), EMBODIMENT, sampling=GREEDY)
    shape = env.action_space.shape
    env.reset(seed=1)
    as_float = env.step(np.ones(shape, np.float32))[0]
    env.reset(seed=1)
    as_int = env.step(np.ones(shape, np.int64))[0]
    np.testing.assert_array_equal(as_float, as_int)
    env.reset(seed=1)
    np.testing.assert_array_equal(env.step(np.ones(shape, int).tolist())[0], as_float)  # a list of Python ints


def _context(store, *, frames=None, actions=None):
    ep = store.episode(1)
    frames = np.asarray(ep["frames"][: 2 * CHUNK : CHUNK]) if frames is None else frames
    actions = np.asarray(ep["actions"][:CHUNK]).reshape(1, -1) if actions is None else actions
    return {"context": {"frames": frames, "actions": actions}}


def test_reset_refuses_nan_or_infinite_context_actions(store):
    env = WorldModelEnv(make_run(store), EMBODIMENT, context_frames=2)
    env.reset(options=_context(store))  # the recorded actions are fine
    for bad in (np.nan, np.inf, -np.inf):
        actions = np.asarray(store.episode(1)["actions"][:CHUNK]).reshape(1, -1).copy()
        actions[0, 3] = bad
        with pytest.raises(DataError, match=rf"^context actions hold {bad} at index \(0, 3\), expected finite numbers"):
            env.reset(options=_context(store, actions=actions))
    with pytest.raises(DataError, match="^context actions must be an array of numbers, got the list"):
        env.reset(options=_context(store, actions=[["left", 1, 2, 3]]))


def test_reset_refuses_frames_of_another_size_or_dtype(store):
    env = WorldModelEnv(make_run(store), EMBODIMENT, context_frames=2)
    big = np.zeros((2, 2 * IMAGE, 2 * IMAGE, 3), np.uint8)  # another camera's or robot's frames
    with pytest.raises(DataError, match=rf"^context frames are uint8 of shape \(2, 64, 64, 3\), expected uint8 "
                                        rf"\(n, {IMAGE}, {IMAGE}, 3\): frames of 'toy' at the model's image size"):
        env.reset(options=_context(store, frames=big))
    as_float = np.asarray(store.episode(1)["frames"][: 2 * CHUNK : CHUNK]) / 255.0
    with pytest.raises(DataError, match=r"^context frames are float64 of shape"):
        env.reset(options=_context(store, frames=as_float))
    with pytest.raises(DataError, match=r"^context state holds nan at index \(0,\)"):
        env.reset(options={"context": {**_context(store)["context"], "state": [np.nan, 1.0]}})
    with pytest.raises(DataError, match=r"^context state has shape \(3,\), expected \(2,\)"):
        env.reset(options={"context": {**_context(store)["context"], "state": [1.0, 2.0, 3.0]}})


def test_a_dataset_of_another_robot_is_refused(store, tmp_path):
    other = make_store(tmp_path / "other", episodes=2, length=8, embodiment="other_robot")
    env = WorldModelEnv(make_run(store), EMBODIMENT)
    with pytest.raises(DataError, match=r"^context dataset .*other is of embodiment 'other_robot', expected one of 'toy'"):
        env.reset(options={"context": str(other.root)})
    with pytest.raises(ConfigError, match=r"^dataset .*other is of embodiment 'other_robot', expected one of 'toy'"):
        WorldModelEnv(make_run(store), EMBODIMENT, dataset=other.root)


def test_the_apps_take_a_box_of_action_dim(store, tmp_path):
    """Synthetic data, random and LeRobot-protocol policies on a robot with one control step per frame."""
    from gymnasium import spaces

    from hma.apps.policy import LeRobotPolicyAdapter, RandomPolicy
    from hma.apps.synth import synthesize

    run = make_run(store, chunk=1)
    for policy in (None, "random"):
        out = synthesize(run, EMBODIMENT, episodes=2, out=tmp_path / f"syn_{policy}", dataset=store.root, steps=3,
                         batch_size=2, policy=policy)
        assert out.num_frames == 2 * 3 and out.actions.shape == (6, 2)
    space = spaces.Box(np.full(2, -2.0, np.float32), np.full(2, 2.0, np.float32))
    assert RandomPolicy(space).act(np.zeros((IMAGE, IMAGE, 3), np.uint8)).shape == (2,)

    class OneStep:  # LeRobot's protocol: one action per control step
        def reset(self):
            pass

        def select_action(self, batch):
            return np.array([[0.5, 9.0]], np.float32)

    action = LeRobotPolicyAdapter(OneStep(), space, "one-step").act(np.zeros((IMAGE, IMAGE, 3), np.uint8))
    np.testing.assert_array_equal(action, [0.5, 2.0])  # (A,), clipped into the Box
