"""The sim commands on a real (briefly trained) run folder opened with hma.load."""

from __future__ import annotations

import pytest
from gymnasium.utils.env_checker import check_env

from _helpers_envs import CHUNK, EMBODIMENT, make_store, make_trained_run
from hma.cli import main
from hma.data.store import EpisodeStore
from hma.envs import WorldModelEnv


pytestmark = pytest.mark.usefixtures("single_thread")


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


def test_load_puts_model_and_tokenizer_on_the_device_asked_for(run):
    import hma
    from hma.run import open_run

    # The meta device stands in for a GPU: nothing may stay behind on the CPU.
    loaded = hma.load(run.path, device="meta")
    assert {p.device.type for p in loaded.model.parameters()} == {"meta"}
    assert {p.device.type for p in loaded.tokenizer.model.parameters()} == {"meta"}
    cpu = hma.load(run.path)
    assert open_run(cpu) is cpu and next(cpu.tokenizer.model.parameters()).device.type == "cpu"
    open_run(cpu, "meta")  # a loaded run moves in place when a device is given
    assert next(cpu.model.parameters()).device.type == "meta" and cpu.tokenizer.device.type == "meta"


@pytest.mark.parametrize("command", ["synth", "policy-eval", "play"])
def test_device_option_reaches_the_library(command, run, tmp_path, monkeypatch):
    import hma.apps.policy_eval
    import hma.apps.synth
    import hma.envs.play

    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    target = {"synth": (hma.apps.synth, "synthesize"), "policy-eval": (hma.apps.policy_eval, "evaluate_policies"),
              "play": (hma.envs.play, "make_play_server")}[command]
    monkeypatch.setattr(*target, record)
    argv = [command, "--run", str(run.path), "--embodiment", EMBODIMENT, "--device", "cpu"]
    if command == "synth":
        argv += ["--episodes", "1", "--out", str(tmp_path / "s")]
    with pytest.raises(SystemExit):
        main(argv)
    assert seen["device"] == "cpu"
