"""WorldModelEnv on a run loaded from disk with ``hma.load``: any action is either accepted
(finite, right shape, floating point or integer; clipped into the Box by default) or rejected
with an EmbodimentError; a 1000-frame rollout keeps its memory flat. The pipeline's robot has
one control step per frame, so its Box is (action_dim,), and (1, action_dim) is taken too."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hma
from hma.errors import EmbodimentError
from hma.envs import WorldModelEnv

from _helpers_robustness import EMBODIMENT, make_pipeline


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return hma.load(make_pipeline(tmp_path_factory.mktemp("pipeline")).run)


@pytest.fixture(scope="module")
def env(loaded):
    env = WorldModelEnv(loaded, EMBODIMENT, max_episode_steps=10 ** 6)
    env.reset(seed=0)
    return env


def _actions(shape):
    """Arrays of many dtypes and shapes; float elements include NaN, inf and huge values."""
    return hnp.arrays(st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_]),
                      st.sampled_from([shape, (1, *shape), (2, *shape), (shape[-1] + 1,), (1, 1, *shape), ()]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_action_is_accepted_in_range_or_rejected(env, data):
    space = env.action_space
    assert space.shape == (2,)  # one control step per frame: gym-pusht's and LeRobot's (action_dim,)
    action = data.draw(_actions(space.shape))
    number = np.issubdtype(action.dtype, np.floating) or np.issubdtype(action.dtype, np.integer)
    # Actions are float32: a float64 beyond float32's range is rejected (as out of range), not cast to inf.
    with np.errstate(over="ignore"):
        finite = not number or np.isfinite(action.astype(np.float32)).all()
    valid = number and action.shape in (space.shape, (1, *space.shape)) and finite
    if not valid:
        with pytest.raises(EmbodimentError, match=repr(EMBODIMENT)):
            env.step(action)
        return
    obs, reward, terminated, truncated, info = env.step(action)
    assert env.observation_space.contains(obs) and reward == 0.0 and not terminated


@pytest.mark.parametrize("action, message", [
    (lambda s: np.full(s.shape, np.nan, np.float32), "NaN or inf"),
    (lambda s: np.full(s.shape, np.inf, np.float32), "NaN or inf"),
    (lambda s: np.zeros(s.shape, np.bool_), "dtype bool"),
    (lambda s: np.zeros((s.shape[0] + 1,), np.float32), r"shape \(3,\), expected \(2,\) \(action_dim\)"),
    (lambda s: np.zeros((2, *s.shape), np.float32), "shape"),
    (lambda s: "forward", "expected a float array"),
    (lambda s: None, "expected a float array"),
])
def test_bad_actions_name_the_problem(env, action, message):
    with pytest.raises(EmbodimentError, match=message):
        env.step(action(env.action_space))


def test_out_of_range_is_clipped_by_default_and_rejected_on_request(loaded):
    # Documented in hma.envs.env: clipped to the dataset's range unless out_of_range="raise".
    clip = WorldModelEnv(loaded, EMBODIMENT)
    high = clip.action_space.high
    clip.reset(seed=3)
    at_bound = clip.step(high)[0]
    clip.reset(seed=3)
    beyond = clip.step(high + 1e3)[0]
    np.testing.assert_array_equal(at_bound, beyond)
    strict = WorldModelEnv(loaded, EMBODIMENT, out_of_range="raise")
    strict.reset(seed=3)
    with pytest.raises(EmbodimentError, match="expected values in"):
        strict.step(high + 1.0)


def _rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20


@pytest.mark.slow
def test_thousand_frame_rollout_keeps_memory_flat(loaded):
    env = WorldModelEnv(loaded, EMBODIMENT, max_episode_steps=1000)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    window = loaded.model.config.num_frames
    rss, cache_sizes = [], set()
    for step in range(1000):
        action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        obs, _, _, truncated, _ = env.step(action)
        assert obs.shape == env.observation_space.shape
        cache = env.core.rollout.engine.cache
        if step >= window:
            cache_sizes.add(sum(t.numel() for t in cache.keys))
        if step in (100, 999):
            rss.append(_rss_mib())
    assert truncated and len(cache_sizes) == 1 and env.core.rollout.engine.cache.length <= window
    # Frames 100 -> 1000 may not grow the process: a leak of one 16x16 frame per step would show.
    assert rss[1] - rss[0] < 20, rss
