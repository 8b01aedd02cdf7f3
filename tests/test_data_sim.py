import json
import numpy as np
import pytest

from _helpers_data_sim import SMALL_EMBODIMENTS, SMALL_EPISODES, SMALL_IMAGE, SMALL_STEPS, small_suite
from hma.cli import main
from hma.data.sim import suite as suite_mod
from hma.data.sim.branches import episode_rng
from hma.data.sim.registry import EMBODIMENTS, FRAME_HZ, get_embodiment
from hma.data.sim.suite import SUITES, generate_dataset, generate_suite
from hma.data.store import EpisodeStore, open_datasets
from hma.errors import ConfigError, EmbodimentError


@pytest.fixture(scope="module")
def stores():
    return {s.embodiment: s for s in open_datasets([small_suite()])}


def test_small_suite_has_the_requested_shapes(stores):
    assert sorted(stores) == sorted(SMALL_EMBODIMENTS)
    for name, s in stores.items():
        spec = get_embodiment(name)
        assert s.num_episodes == SMALL_EPISODES
        assert s.num_frames == SMALL_EPISODES * SMALL_STEPS
        assert s.frames.dtype == np.uint8 and s.frames.shape[1:] == (SMALL_IMAGE, SMALL_IMAGE, 3)
        assert s.action_dim == spec.action_dim and s.control_hz == spec.control_hz
        assert s.meta["extra"]["suggested_frame_hz"] == FRAME_HZ
        assert np.isfinite(s.actions).all()


def test_frames_are_real_renders_and_differ_across_embodiments(stores):
    firsts = {}
    for name, s in stores.items():
        frames = np.asarray(s.frames, dtype=np.float32)
        assert frames.std() > 10.0, f"{name} frames look blank (std {frames.std():.1f})"
        firsts[name] = frames.mean(0)
    names = sorted(firsts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(firsts[a] - firsts[b]).mean() > 10.0, f"{a} and {b} render alike"


def test_frames_change_within_episodes(stores):
    for name, s in stores.items():
        for e in range(s.num_episodes):
            frames = np.asarray(s.episode(e)["frames"], dtype=np.int16)
            changed = (np.abs(np.diff(frames, axis=0)).max(axis=(1, 2, 3)) > 0).mean()
            assert changed > 0.8, f"{name} episode {e}: only {changed:.0%} of steps change the frame"


def test_success_is_recorded_where_the_simulator_has_it(stores):
    assert stores["metaworld_push_sawyer"].success is not None
    assert stores["pusht"].success is not None
    assert stores["gym_reacher"].success is not None
    assert stores["gym_halfcheetah"].success is None


def test_reacher_succeeds_only_with_the_fingertip_on_the_target():
    spec = get_embodiment("gym_reacher")
    env = spec.make(16)
    try:
        for seed in range(3):
            env.reset(np.random.default_rng(seed))
            tip = lambda: env.data.body("fingertip").xpos[:2]  # noqa: E731
            target = env.data.body("target").xpos[:2]
            assert np.linalg.norm(tip() - target) > env.reach_tolerance and not env.success()
            flags = []
            for _ in range(60):  # 3 s of the scripted expert
                env.step(env.expert())
                flags.append(env.success())
                assert flags[-1] == (np.linalg.norm(tip() - target) < env.reach_tolerance)
            assert any(flags), f"seed {seed}: the expert never reached the target"
    finally:
        env.close()


def test_state_and_reward_are_recorded_and_follow_the_simulation(stores):
    for name, s in stores.items():
        assert s.state is not None and s.reward is not None, name
        assert s.state.shape == (s.num_frames, len(s.state_names)) and len(s.state_names) >= 2
        assert np.isfinite(s.state).all() and np.isfinite(s.reward).all()
        state = np.asarray(s.episode(0)["state"])
        assert (np.abs(np.diff(state, axis=0)).max(axis=1) > 0).mean() > 0.5, f"{name}: the state hardly changes"
    # What each simulator exposes: MuJoCo's qpos/qvel, Meta-World's observation, PushT's pusher position.
    assert stores["gym_reacher"].state_names[0] == "qpos0" and stores["pusht"].state_names == ["agent_x", "agent_y"]
    assert stores["metaworld_push_sawyer"].state.shape[1] == 39
    assert (np.asarray(stores["gym_halfcheetah"].reward) != 0).any()


def test_robosuite_records_its_proprioceptive_state(tmp_path):
    spec = get_embodiment("robosuite_lift_panda")
    store = EpisodeStore(generate_dataset(spec, tmp_path / "panda", episodes=1, episode_steps=4, image_size=16,
                                          seed=0, branches=None))
    assert store.state_names[0] == "proprio0" and store.state.shape == (4, len(store.state_names))
    assert store.reward.shape == (4,) and np.isfinite(store.state).all()


@pytest.mark.parametrize("name", ["gym_reacher", "pusht"])
def test_what_is_seen_depends_on_the_actions(name):
    spec = get_embodiment(name)
    env = spec.make(SMALL_IMAGE)
    try:
        finals = []
        for sign in (-1.0, 1.0):
            env.reset(np.random.default_rng(3))
            for _ in range(6):
                env.step(env.explore(np.full(spec.action_dim, sign)).astype(np.float32))
            finals.append(env.frame().astype(np.int16))
    finally:
        env.close()
    assert np.abs(finals[0] - finals[1]).mean() > 1.0


def test_tiny_and_default_suites_meet_their_specification():
    for suite, min_embodiments in (("tiny", 4), ("default", 6)):
        s = SUITES[suite]
        specs = [get_embodiment(n) for n in s.embodiments]
        assert len(specs) >= min_embodiments
        assert len({sp.simulator for sp in specs}) >= 3
        assert len({sp.control_hz for sp in specs}) >= 2
        windows = 8 if suite == "tiny" else 16
        for sp in specs:
            assert sp.control_hz % FRAME_HZ == 0, sp.name
            assert s.episode_steps(sp) >= windows * sp.stride, (suite, sp.name)
    assert len({get_embodiment(n).action_dim for n in SUITES["tiny"].embodiments}) >= 3
    default = SUITES["default"].embodiments
    assert {n for n in EMBODIMENTS if n.startswith("robosuite_")} <= set(default)
    assert {"gym_reacher", "gym_pusher", "gym_halfcheetah", "pusht"} <= set(default)
    assert any(n.startswith("metaworld_") for n in default)


def test_pretrain_suite_has_hundreds_of_tiny_suite_episodes_and_branches_a_few():
    from types import SimpleNamespace

    from hma.data.sim.branches import BranchPlan, plan_branches

    pretrain, tiny = SUITES["pretrain"], SUITES["tiny"]
    assert set(pretrain.embodiments) == set(tiny.embodiments) and len(pretrain.embodiments) == 5
    assert pretrain.episodes >= 200 and pretrain.max_episode_seconds == tiny.max_episode_seconds == 2.4
    # 256 episodes hold 26 out; branches of the first 4 are the 96 clips evaluation uses.
    spec = get_embodiment("gym_reacher")
    steps = pretrain.episode_steps(spec)
    store = SimpleNamespace(num_episodes=pretrain.episodes, episode_length=lambda e: steps)
    branches = plan_branches(store, spec, pretrain.branches)
    assert sorted({b.episode for b in branches}) == [230, 231, 232, 233] and len(branches) == 96
    assert len({b.episode for b in plan_branches(store, spec, BranchPlan())}) == 26
    assert "max_episodes" not in BranchPlan().describe()  # the other suites' branch metadata is unchanged
    assert all(s.branches == BranchPlan() for s in SUITES.values() if s is not pretrain)
    with pytest.raises(ConfigError, match="max_episodes 0 is invalid"):
        BranchPlan(max_episodes=0)


def test_unknown_embodiment_names_it_and_lists_the_known_ones(tmp_path, capsys):
    with pytest.raises(EmbodimentError) as err:
        get_embodiment("gym_walker")
    assert "gym_walker" in str(err.value) and "gym_reacher" in str(err.value)
    with pytest.raises(EmbodimentError):
        generate_suite("tiny", tmp_path, embodiments=["gym_walker"])
    with pytest.raises(ConfigError):
        generate_suite("huge", tmp_path)
    assert main(["data", "generate", "--suite", "tiny", "--out", str(tmp_path), "--embodiments", "gym_walker"]) == 2
    assert "gym_walker" in capsys.readouterr().err


def test_resume_after_interruption_gives_identical_arrays(tmp_path, monkeypatch):
    spec = get_embodiment("gym_reacher")
    kwargs = dict(episodes=3, episode_steps=10, image_size=24, seed=5)
    reference = EpisodeStore(generate_dataset(spec, tmp_path / "whole", **kwargs))

    real_rollout = suite_mod.rollout
    calls = []

    def dies_on_second_episode(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_rollout(*args, **kw)

    monkeypatch.setattr(suite_mod, "rollout", dies_on_second_episode)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(spec, tmp_path / "resumed", **kwargs)
    assert (tmp_path / "resumed.partial").exists() and not (tmp_path / "resumed").exists()
    monkeypatch.setattr(suite_mod, "rollout", real_rollout)
    resumed = EpisodeStore(generate_dataset(spec, tmp_path / "resumed", **kwargs))

    np.testing.assert_array_equal(resumed.frames, reference.frames)
    np.testing.assert_array_equal(resumed.actions, reference.actions)
    np.testing.assert_array_equal(resumed.episode_starts, reference.episode_starts)


def test_finished_dataset_is_skipped_unless_overwrite(tmp_path):
    spec = get_embodiment("gym_reacher")
    kwargs = dict(episodes=1, episode_steps=4, image_size=16, seed=0)
    path = generate_dataset(spec, tmp_path / "r", **kwargs)
    meta = (path / "metadata.json").read_text()
    generate_dataset(spec, tmp_path / "r", **{**kwargs, "seed": 1})
    assert (path / "metadata.json").read_text() == meta
    generate_dataset(spec, tmp_path / "r", **{**kwargs, "seed": 1}, overwrite=True)
    assert EpisodeStore(path).meta["extra"]["seed"] == 1


@pytest.mark.slow
def test_cli_generates_the_whole_tiny_suite(tmp_path, capsys):
    assert main(["data", "generate", "--suite", "tiny", "--out", str(tmp_path)]) == 0
    stores = open_datasets([tmp_path])
    tiny = SUITES["tiny"]
    assert sorted(s.embodiment for s in stores) == sorted(tiny.embodiments)
    for s in stores:
        spec = get_embodiment(s.embodiment)
        assert s.num_episodes == tiny.episodes
        assert s.num_frames == tiny.episodes * tiny.episode_steps(spec)
        assert s.frames.shape[1:] == (64, 64, 3)
    assert "robosuite_lift_panda" in capsys.readouterr().out


def test_cli_branch_every_spaces_the_branch_points(tmp_path, capsys):
    from hma.data.sim.branches import open_branches

    assert main(["data", "generate", "--suite", "tiny", "--out", str(tmp_path), "--embodiments", "gym_reacher",
                 "--episodes", "2", "--image-size", "16", "--branch-every", "5"]) == 0
    store, branches = open_branches(tmp_path / "gym_reacher")
    assert store.meta["extra"]["plan"]["every_frames"] == 5
    stride = get_embodiment("gym_reacher").stride
    steps = sorted({b.step for b in branches})
    assert len(steps) >= 2 and all(b - a == 5 * stride for a, b in zip(steps, steps[1:]))
    with pytest.raises(SystemExit) as err:
        main(["data", "generate", "--suite", "tiny", "--out", str(tmp_path / "x"), "--branch-every", "0"])
    assert err.value.code == 2 and "argument --branch-every: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_an_export_of_the_suite_carries_state_cameras_tasks_and_rewards_and_imports_back(stores, tmp_path):
    from hma.data.lerobot import export_lerobot, import_lerobot

    for store in stores.values():
        out = tmp_path / store.embodiment
        report = export_lerobot(store.root, out, codec="libx264")
        assert report.actions_identical and report.psnr_db > 20  # 32x32 renders through H.264 at crf 18
        features = json.loads((out / "meta" / "info.json").read_text())["features"]
        assert features["observation.state"]["names"] == store.state_names
        assert features["next.reward"]["dtype"] == "float32"
        videos = [k for k, f in features.items() if f["dtype"] == "video"]
        assert len(videos) == 1 + len(store.cameras)  # every camera of the store
        back = import_lerobot(out, tmp_path / f"{store.embodiment}_back")
        assert back.state_names == store.state_names
        for e in range(store.num_episodes):
            a, b = store.episode(e), back.episode(e)
            for key in ("actions", "state", "reward"):
                np.testing.assert_array_equal(b[key], a[key], err_msg=f"{store.embodiment} {key}")
            assert back.episode_task(e) == (store.episode_task(e) or store.embodiment)


def test_demonstrations_follow_the_expert_at_every_step(tmp_path, capsys):
    args = ["data", "generate", "--suite", "tiny", "--embodiments", "gym_reacher", "--episodes", "1",
            "--out", str(tmp_path), "--no-counterfactual", "--demonstrations", "0", "--image-size", "16"]
    assert main(args) == 0
    store = EpisodeStore(tmp_path / "gym_reacher")
    assert store.meta["extra"]["behaviour"]["expert_fraction"] == [1.0, 1.0]
    # Replayed from the same initial state, every recorded action is the expert's own there.
    spec = get_embodiment("gym_reacher")
    env = spec.make(16)
    try:
        env.reset(episode_rng(0, spec.name, 0))
        for action in np.asarray(store.episode(0)["actions"]):
            np.testing.assert_allclose(action, np.clip(env.expert(), env.action_low, env.action_high), atol=1e-6)
            env.step(action)
    finally:
        env.close()
    with pytest.raises(SystemExit) as err:
        main(args[:-4] + ["--demonstrations", "1.5", "--overwrite"])
    assert err.value.code == 2
    assert "argument --demonstrations: expected a finite number in [0, 1], got 1.5" in capsys.readouterr().err


def test_coverage_mix_adds_jitter_and_keeps_the_default_stream(tmp_path, capsys):
    from hma.data.sim.rollout import BehaviourMix, rollout

    spec = get_embodiment("gym_reacher")
    env = spec.make(16)
    try:
        def actions(mix):
            return rollout(env, 60, spec.control_hz, np.random.default_rng(5), mix).actions

        def lag1(a):  # mean lag-1 autocorrelation over action dimensions
            return float(np.mean([np.corrcoef(a[1:, i], a[:-1, i])[0, 1] for i in range(a.shape[1])]))

        random_only = dict(expert_fraction=(0.0, 0.0))
        assert lag1(actions(BehaviourMix(**random_only))) > 0.5  # smooth exploration
        assert abs(lag1(actions(BehaviourMix(**random_only, jitter_fraction=1.0)))) < 0.35  # i.i.d. jitter
    finally:
        env.close()
    args = ["data", "generate", "--suite", "tiny", "--embodiments", "gym_reacher", "--episodes", "1",
            "--out", str(tmp_path), "--no-counterfactual", "--coverage", "--image-size", "16"]
    assert main(args) == 0
    behaviour = EpisodeStore(tmp_path / "gym_reacher").meta["extra"]["behaviour"]
    assert behaviour["jitter_fraction"] == 0.5 and behaviour["expert_noise"] == [0.02, 1.5]
    assert main(args + ["--demonstrations", "0", "--overwrite"]) == 2
    assert "--coverage and --demonstrations were both given" in capsys.readouterr().err


def test_lift_expert_holds_the_cube_in_the_cameras_view():
    # A cube carried out of view would leave frames of an empty table that mean "lifted",
    # which a classifier judging success from frames cannot tell from a vanished cube.
    env = get_embodiment("robosuite_lift_panda").make(64)
    try:
        env.reset(np.random.default_rng(0))
        table = env.env.model.mujoco_arena.table_offset[2]
        heights, red = [], []
        for _ in range(100):
            env.step(env.expert())
            heights.append(env.env.sim.data.body_xpos[env.env.cube_body_id][2] - table)
            rgb = env.frame().astype(np.int16)
            red.append(int((rgb[..., 0] - rgb[..., 1:].max(-1) > 60).sum()))
        assert env.success()
    finally:
        env.close()
    assert 0.06 < heights[-1] < 0.12 and max(heights) < 0.12
    assert min(red) > 0, f"the red cube left the view: red pixels per frame {red}"
