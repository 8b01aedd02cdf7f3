"""Simulated tasks as instructions, quiet simulators, and what `hma data info` says of a dataset."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _helpers_data_sim import SMALL_EMBODIMENTS, small_suite
from hma.cli import main
from hma.data.sim.registry import EMBODIMENTS, SimEmbodiment, dataset_task, get_embodiment
from hma.data.sim.quiet import SimulatorOutput
from hma.data.store import EpisodeStore
from hma.errors import DataError, EmbodimentError

ADAPTER = str(Path(__file__).resolve().parents[1] / "src" / "hma" / "data" / "sim" / "metaworld_env.py")


def test_every_registered_task_has_its_own_instruction():
    by_task: dict[str, set[str]] = {}
    for name, spec in EMBODIMENTS.items():
        words = spec.instruction.rstrip(".").split()
        assert len(words) >= 3 and spec.instruction[0].isupper() and spec.instruction.endswith("."), name
        assert spec.instruction.rstrip(".") != spec.task, f"{name}: the instruction is the simulator id"
        by_task.setdefault(spec.task, set()).add(spec.instruction)
    assert all(len(v) == 1 for v in by_task.values()), by_task  # one instruction per simulator task
    instructions = [next(iter(v)) for v in by_task.values()]
    assert len(set(instructions)) == len(instructions)  # and different tasks read differently
    spec = get_embodiment("pusht")
    with pytest.raises(EmbodimentError, match="'new_robot' has instruction ''"):
        SimEmbodiment("new_robot", "pymunk", "New-v0", "", spec.action_names, 10, 1.0, "none", spec.make)


def test_simulated_datasets_record_the_instruction_and_the_simulator_id():
    for name in SMALL_EMBODIMENTS:
        spec = get_embodiment(name)
        store = EpisodeStore(small_suite() / name)
        assert store.meta["task"] == spec.instruction and store.meta["extra"]["sim_task"] == spec.task
        assert store.episode_task(0) == spec.instruction
        assert dataset_task(store.meta) == (spec.instruction, spec.task)
        branches = store.root / "counterfactual"
        if branches.exists():
            assert dataset_task(EpisodeStore(branches).meta) == (spec.instruction, spec.task)


def test_the_lerobot_task_string_is_the_instruction(tmp_path):
    from hma.data.lerobot import export_lerobot

    spec = get_embodiment("pusht")
    export_lerobot(small_suite() / "pusht", tmp_path / "pusht", codec="libx264")
    tasks = pd.read_parquet(tmp_path / "pusht" / "meta" / "tasks.parquet")
    assert list(tasks.index) == [spec.instruction] and list(tasks["task_index"]) == [0]
    episodes = pd.read_parquet(next((tmp_path / "pusht" / "meta" / "episodes").rglob("*.parquet")))
    assert all(list(t) == [spec.instruction] for t in episodes["tasks"])
    info = json.loads((tmp_path / "pusht" / "meta" / "info.json").read_text())
    assert info["total_tasks"] == 1


def _legacy_copy(tmp_path: Path, name: str) -> Path:
    """A simulated dataset as hma wrote them before instructions: ``task`` is the simulator's id."""
    legacy = tmp_path / name
    shutil.copytree(small_suite() / name, legacy, ignore=shutil.ignore_patterns("counterfactual"))
    meta = json.loads((legacy / "metadata.json").read_text())
    meta["task"] = meta["extra"].pop("sim_task")
    (legacy / "metadata.json").write_text(json.dumps(meta))
    return legacy


def test_datasets_written_before_instructions_read_as_instruction_and_simulator_id(tmp_path):
    from hma.data.lerobot.writer import _task

    spec = get_embodiment("gym_reacher")
    legacy = EpisodeStore(_legacy_copy(tmp_path, "gym_reacher"))
    assert legacy.meta["task"] == "Reacher-v5"
    assert dataset_task(legacy.meta) == (spec.instruction, "Reacher-v5")
    assert _task(legacy, 0) == spec.instruction  # what an export writes
    # Anything else keeps its task string, and has no simulator id.
    assert dataset_task({"embodiment": "gym_reacher", "task": "reach", "extra": {"lerobot": {}}}) == ("reach", "")
    assert dataset_task({"embodiment": "so100", "task": "Pick the cube.", "extra": "mangled"}) == ("Pick the cube.", "")


def test_data_info_shows_the_instruction_and_the_simulator_id(tmp_path, capsys):
    _legacy_copy(tmp_path, "gym_reacher")
    assert main(["data", "info", str(small_suite()), str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-2:] == ["sim_task", "task"]
    for name in [*SMALL_EMBODIMENTS, "gym_reacher"]:
        spec = get_embodiment(name)
        rows = [line for line in lines if line.startswith(name + " ")]
        assert rows and all(spec.task in line.split() and line.endswith(spec.instruction) for line in rows)
    assert not any("synthetic" in line for line in lines)


def test_simulator_output_is_recorded_and_shown_only_when_verbose(capfd):
    received = []

    class Keep(logging.Handler):
        def emit(self, record):
            received.append(record.getMessage())

    logger = logging.getLogger("robosuite_logs")
    handler = Keep()
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            for verbose in (False, True):
                with SimulatorOutput(verbose) as out:
                    warnings.warn_explicit("Constant(s) may be too high", UserWarning, ADAPTER, 49)
                    logger.warning("No private macro file found!")
                    warnings.warn_explicit("hma's own", RuntimeWarning, __file__, 1)
                assert len(out.lines) == 2 and "UserWarning: Constant(s) may be too high" in out.lines[0]
                assert out.lines[1] == "[robosuite_logs WARNING] No private macro file found!"
                assert [str(w.message) for w in shown] == ["hma's own"] + ["Constant(s) may be too high", "hma's own"] * verbose
                assert received == ["No private macro file found!"] * verbose
    finally:
        logger.removeHandler(handler)
    assert "WARNING" not in capfd.readouterr().err
    assert not logger.filters  # nothing left behind


def test_data_generate_hides_the_simulators_warnings_unless_verbose(tmp_path, capfd):
    pytest.importorskip("metaworld")
    args = ["data", "generate", "--suite", "tiny", "--embodiments", "metaworld_push_sawyer", "--episodes", "1",
            "--image-size", "16", "--workers", "1", "--no-counterfactual", "--no-progress"]
    for verbose in (False, True):
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("default")
            assert main([*args, "--out", str(tmp_path / str(verbose)), *(["--verbose"] * verbose)]) == 0
        printed = capfd.readouterr()
        from_metaworld = [w for w in shown if "metaworld" in w.filename]
        if verbose:  # passed on to Python's warning display (here pytest's record of it)
            assert from_metaworld and issubclass(from_metaworld[0].category, UserWarning)
        else:
            assert not from_metaworld
            assert not [line for line in (printed.out + printed.err).splitlines() if "WARNING" in line or "UserWarning" in line]


@pytest.mark.slow
def test_data_generate_prints_no_simulator_warnings_in_a_fresh_process(tmp_path):
    """The first run a user sees: robosuite's import-time WARNING lines and Meta-World's UserWarning."""
    pytest.importorskip("robosuite")
    pytest.importorskip("metaworld")
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    outputs = {}
    for verbose in (False, True):
        cmd = [sys.executable, "-m", "hma", "data", "generate", "--suite", "tiny", "--embodiments", "robosuite_lift_panda",
               "metaworld_push_sawyer", "--episodes", "1", "--image-size", "16", "--workers", "1", "--no-counterfactual",
               "--no-progress", "--out", str(tmp_path / str(verbose)), *(["--verbose"] * verbose)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs[verbose] = done.stdout + done.stderr
    assert "Lift the cube." in outputs[False]
    assert not [line for line in outputs[False].splitlines() if "WARNING" in line or "UserWarning" in line]
    assert "[robosuite WARNING]" in outputs[True] and "UserWarning" in outputs[True]


def test_a_mistyped_synthetic_flag_is_refused(tmp_path):
    from _helpers_store import make_store

    store = make_store(tmp_path / "toy", episodes=1, length=4)
    assert not store.synthetic and "synthetic" not in store.meta
    meta = json.loads((store.root / "metadata.json").read_text())
    meta["synthetic"] = "yes"
    (store.root / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="field 'synthetic' is 'yes', expected true or false"):
        EpisodeStore(store.root)


def test_synthetic_datasets_written_before_the_flag_still_read_as_synthetic(tmp_path):
    from hma.data.inspect import info_table
    from hma.data.store import DatasetInfo, StoreWriter

    info = DatasetInfo(embodiment="pusht", simulator="pymunk", action_names=["x", "y"], control_hz=10.0,
                       image_size=(8, 8), extra={"synthetic": {"run": "runs/old"}})
    writer = StoreWriter(tmp_path / "old", info)
    writer.add_episode(np.zeros((3, 8, 8, 3), np.uint8), np.zeros((3, 2), np.float32))
    store = writer.finalize()
    assert "synthetic" not in store.meta and store.synthetic and store.info.synthetic
    assert info_table([store.root]).splitlines()[-1] == f"{store.root}: synthetic, generated by run runs/old"
