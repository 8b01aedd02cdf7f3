"""Counterfactual branches: exact replay per simulator, the store round trip, resume, bad metadata."""

import json

import numpy as np
import pytest

from _helpers_data_sim import SMALL_IMAGE, SMALL_STEPS
from hma.data.sim import branches as branches_mod
from hma.data.sim.branches import BRANCHES_DIR, BranchPlan, BranchPolicy, open_branches, replay_to
from hma.data.sim.registry import get_embodiment
from hma.data.sim.suite import generate_dataset
from hma.data.store import METADATA_FILE, EpisodeStore
from hma.errors import DataError

# Six 10 Hz frames per 20 Hz episode of 12 steps: branch points at frames 1 and 3.
PLAN = BranchPlan(min_future_frames=2)
ONE_PER_SIMULATOR = ["gym_halfcheetah", "metaworld_push_sawyer", "pusht", "robosuite_lift_panda"]


@pytest.mark.parametrize("name", ONE_PER_SIMULATOR)
def test_replaying_the_recorded_actions_from_a_branch_point_reproduces_the_recorded_frames(tmp_path, name):
    spec = get_embodiment(name)
    # Episode 1 was rendered by an env that had run episode 0 before: nothing may leak across episodes.
    store = EpisodeStore(generate_dataset(spec, tmp_path / name, episodes=2, episode_steps=SMALL_STEPS,
                                          image_size=SMALL_IMAGE, seed=3, branches=None))
    recorded = store.episode(1)
    env = spec.make(SMALL_IMAGE)
    try:
        for step in (0, 5):
            replay_to(env, spec, seed=3, episode=1, actions=recorded["actions"], step=step)
            frames = []
            for action in recorded["actions"][step:]:
                frames.append(env.frame())
                env.step(action)
            np.testing.assert_array_equal(np.stack(frames), recorded["frames"][step:], err_msg=f"{name} from step {step}")
    finally:
        env.close()


def test_every_halfcheetah_episode_opens_as_a_fresh_environment_would(tmp_path):
    """The tracking camera carried the previous episode's pan into the next one's first frames."""
    spec = get_embodiment("gym_halfcheetah")
    store = EpisodeStore(generate_dataset(spec, tmp_path / "hc", episodes=3, episode_steps=SMALL_STEPS,
                                          image_size=SMALL_IMAGE, seed=0, branches=None))
    for e in range(store.num_episodes):
        env = spec.make(SMALL_IMAGE)
        try:
            replay_to(env, spec, seed=0, episode=e, actions=store.episode(e)["actions"], step=0)
            np.testing.assert_array_equal(env.frame(), store.episode(e)["frames"][0], err_msg=f"episode {e}")
        finally:
            env.close()


@pytest.fixture(scope="module")
def reacher_with_branches(tmp_path_factory):
    spec = get_embodiment("gym_reacher")
    out = generate_dataset(spec, tmp_path_factory.mktemp("br") / "reacher", episodes=3, episode_steps=SMALL_STEPS,
                           image_size=SMALL_IMAGE, seed=0, branches=PLAN)
    return spec, out


def test_branches_round_trip_through_the_store(reacher_with_branches):
    spec, out = reacher_with_branches
    parent = EpisodeStore(out)
    store, branches = open_branches(out)
    assert (out / BRANCHES_DIR / METADATA_FILE).exists()
    # Held out: the last episode (3 episodes, holdout 0.1); two points, one branch per policy at each.
    assert [(b.episode, b.step, b.policy) for b in branches] == [
        (2, step, policy) for step in (2, 6) for policy in BranchPolicy]
    assert store.num_episodes == len(branches)
    for i, b in enumerate(branches):
        branch, ep = store.episode(i), parent.episode(b.episode)
        assert len(branch["actions"]) == SMALL_STEPS - b.step  # runs to the end of the parent episode
        np.testing.assert_array_equal(branch["frames"][0], ep["frames"][b.step])  # the same start
        assert not np.allclose(branch["actions"], ep["actions"][b.step:])  # other actions
        assert (branch["frames"][1:] != ep["frames"][b.step + 1:]).any(), f"branch {i} looks like its parent"
    assert store.meta["extra"]["plan"] == PLAN.describe()


def test_random_branches_draw_the_training_episodes_actions(reacher_with_branches):
    _, out = reacher_with_branches
    parent = EpisodeStore(out)
    train_rows = {tuple(r) for e in (0, 1) for r in parent.episode(e)["actions"]}
    store, branches = open_branches(out)
    for i, b in enumerate(branches):
        if b.policy is BranchPolicy.RANDOM:
            assert {tuple(r) for r in store.episode(i)["actions"]} <= train_rows


def test_killed_branch_generation_resumes_to_the_uninterrupted_result(tmp_path, reacher_with_branches, monkeypatch):
    spec, full = reacher_with_branches
    out = tmp_path / "reacher"
    generate_dataset(spec, out, episodes=3, episode_steps=SMALL_STEPS, image_size=SMALL_IMAGE, seed=0, branches=None)
    real = branches_mod.branch_actions
    calls = {"n": 0}

    def dies_on_the_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(branches_mod, "branch_actions", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        branches_mod.generate_branches(spec, out, plan=PLAN)
    assert not (out / BRANCHES_DIR / METADATA_FILE).exists()
    monkeypatch.setattr(branches_mod, "branch_actions", real)
    branches_mod.generate_branches(spec, out, plan=PLAN)
    done, expected = EpisodeStore(out / BRANCHES_DIR), EpisodeStore(full / BRANCHES_DIR)
    np.testing.assert_array_equal(np.asarray(done.frames), np.asarray(expected.frames))
    np.testing.assert_array_equal(done.actions, expected.actions)


def test_a_branch_list_that_does_not_match_the_store_is_refused(tmp_path, reacher_with_branches):
    import shutil

    _, full = reacher_with_branches
    out = tmp_path / "reacher"
    shutil.copytree(full, out)
    meta_file = out / BRANCHES_DIR / METADATA_FILE
    meta = json.loads(meta_file.read_text())
    meta["extra"]["branches"] = meta["extra"]["branches"][:-1]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="one entry per episode"):
        open_branches(out)
    meta["extra"]["branches"] = [{"episode": 2}] * (len(meta["extra"]["branches"]) + 1)
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="malformed"):
        open_branches(out)


def test_a_dataset_without_a_seed_cannot_branch(tmp_path, reacher_with_branches):
    import shutil

    spec, full = reacher_with_branches
    out = tmp_path / "reacher"
    shutil.copytree(full, out, ignore=shutil.ignore_patterns(BRANCHES_DIR))
    meta = json.loads((out / METADATA_FILE).read_text())
    del meta["extra"]["seed"]
    (out / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(DataError, match="extra.seed"):
        branches_mod.generate_branches(spec, out, plan=PLAN)


def test_metaworld_push_reset_redraws_an_object_too_close_to_its_goal():
    """Meta-World's own redraw loop repeats the frozen draw forever; ours draws again."""
    spec = get_embodiment("metaworld_push_sawyer")
    env = spec.make(SMALL_IMAGE)
    try:
        space = env.env._random_reset_space
        seed = next(s for s in range(1000)
                    if np.linalg.norm(np.subtract(*np.random.default_rng(s).uniform(space.low, space.high)[[0, 1, 3, 4]]
                                                  .reshape(2, 2))) < 0.15)
        env.reset(np.random.default_rng(seed))
        vec = env.env._last_rand_vec
        assert np.linalg.norm(vec[:2] - vec[3:5]) >= 0.15
    finally:
        env.close()


@pytest.mark.parametrize("name", ["gym_reacher", "pusht"])
def test_drawing_the_robot_larger_leaves_its_dynamics_alone(name):
    """Reacher's thicker links and PushT's larger pusher are drawn only: the state follows plain gymnasium's."""
    import gymnasium as gym

    spec = get_embodiment(name)
    env = spec.make(SMALL_IMAGE)
    if name == "gym_reacher":
        plain = gym.make("Reacher-v5", frame_skip=5).unwrapped
        state = lambda e: np.concatenate([e.data.qpos, e.data.qvel])  # noqa: E731
        ours = env.env
    else:
        import gym_pusht  # noqa: F401

        plain = gym.make("gym_pusht/PushT-v0", obs_type="state").unwrapped
        state = lambda e: np.array([*e.agent.position, *e.agent.velocity, *e.block.position, e.block.angle])  # noqa: E731
        ours = env._env.unwrapped
    try:
        env.reset(np.random.default_rng(5))
        seed = int(np.random.default_rng(5).integers(2**31))  # what env.reset drew to seed the simulator
        plain.reset(seed=seed)
        rng = np.random.default_rng(0)
        for _ in range(30):
            a = env.explore(rng.uniform(-1, 1, len(env.action_low))).astype(np.float32)
            env.step(a)
            env.frame()
            plain.step(a)
        np.testing.assert_array_equal(state(ours), state(plain))
    finally:
        env.close()
        plain.close()
