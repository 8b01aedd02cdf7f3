"""`hma data generate --workers N`: a pool of processes writes the serial path's datasets, bit for bit."""

import numpy as np
import pytest

import _helpers_data_sim  # noqa: F401  (MUJOCO_GL=egl before any simulator loads)
from hma.cli import main
from hma.data.sim import suite as suite_mod
from hma.data.sim.branches import BRANCHES_DIR
from hma.data.sim.suite import generate_suite
from hma.data.store import EpisodeStore
from hma.errors import ConfigError

NAMES = ("gym_reacher", "pusht")  # the cheapest simulators; the pool splits 6 episodes into ranges of 3
KWARGS = dict(episodes=6, image_size=16, seed=3, embodiments=NAMES)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    root = tmp_path_factory.mktemp("serial")
    generate_suite("tiny", root, **KWARGS, workers=1)
    return root


def _assert_same_datasets(a, b):
    for name in NAMES:
        for sub in ("", BRANCHES_DIR):
            x, y = EpisodeStore(a / name / sub), EpisodeStore(b / name / sub)
            assert x.num_episodes == y.num_episodes
            for key in ("frames", "actions", "episode_starts", "state", "reward", "success"):
                if getattr(x, key) is None:
                    assert getattr(y, key) is None, (name, sub, key)
                else:
                    np.testing.assert_array_equal(getattr(y, key), getattr(x, key), err_msg=f"{name} {sub} {key}")


def test_a_pool_writes_the_serial_datasets_and_branches(serial, tmp_path, capsys):
    generate_suite("tiny", tmp_path, **KWARGS, workers=2)
    _assert_same_datasets(serial, tmp_path)
    for name in NAMES:  # only the dataset's own files: no staging, no parts of the pool's jobs
        assert sorted(p.name for p in (tmp_path / name).iterdir() if p.is_dir()) == [BRANCHES_DIR]
        assert not (tmp_path / f"{name}.partial").exists()
    shown = capsys.readouterr()
    assert "gym_reacher: 100%" in shown.err and "pusht: 6 episodes written" in shown.out


def test_a_pool_resumes_a_killed_serial_run(serial, tmp_path, monkeypatch):
    real_rollout, calls = suite_mod.rollout, []

    def dies_on_third_episode(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_rollout(*args, **kw)

    monkeypatch.setattr(suite_mod, "rollout", dies_on_third_episode)
    with pytest.raises(KeyboardInterrupt):
        generate_suite("tiny", tmp_path, **KWARGS, workers=1)
    monkeypatch.setattr(suite_mod, "rollout", real_rollout)
    assert (tmp_path / "gym_reacher.partial").exists() and not (tmp_path / "gym_reacher").exists()
    # 2 episodes staged: the pool's first range (0-3) is generated again and appended from episode 2 on.
    generate_suite("tiny", tmp_path, **KWARGS, workers=2)
    _assert_same_datasets(serial, tmp_path)


def test_workers_must_be_positive(tmp_path, capsys):
    for workers in (0, -2):
        with pytest.raises(ConfigError, match=f"--workers {workers} is invalid; expected a positive number"):
            generate_suite("tiny", tmp_path, workers=workers)
    with pytest.raises(SystemExit) as stop:
        main(["data", "generate", "--suite", "tiny", "--out", str(tmp_path), "--workers", "0"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "argument --workers: expected an integer >= 1, got 0" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())
