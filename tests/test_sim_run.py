"""The sim commands on a real (briefly trained) run folder opened with hma.load."""

from __future__ import annotations

import pytest
from gymnasium.utils.env_checker import check_env

from _helpers_sim import CHUNK, EMBODIMENT, make_store, make_trained_run, one_thread
from hma.cli import main
from hma.data.store import EpisodeStore
from hma.sim import WorldModelEnv


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("simrun")
    return make_trained_run(make_store(root / "toy", episodes=4, length=16), root)


def test_env_opens_run_folder_and_finds_its_dataset(run):
    env = WorldModelEnv(run.path, EMBODIMENT, max_episode_steps=3)
    assert env.core.store is not None and env.core.store.embodiment == EMBODIMENT
    check_env(env, skip_render_check=False)


def test_synth_command_writes_a_valid_dataset(run, tmp_path, capsys):
    out = tmp_path / "synthetic"
    assert main(["synth", "--run", str(run.path), "--embodiment", EMBODIMENT, "--episodes", "2", "--out", str(out),
                 "--frames", "3"]) == 0
    store = EpisodeStore(out, verify=True)
    assert store.num_episodes == 2 and store.num_frames == 2 * 3 * CHUNK
    assert main(["synth", "--run", str(run.path), "--embodiment", EMBODIMENT, "--episodes", "2", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_policy_eval_command_reports_a_simulator_it_lacks(run, tmp_path, capsys):
    code = main(["policy-eval", "--run", str(run.path), "--embodiment", EMBODIMENT, "--episodes", "1",
                 "--out", str(tmp_path / "pe")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown embodiment 'toy'" in err
