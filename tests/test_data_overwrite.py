"""`hma data generate --overwrite`: the new dataset is built beside the old one and swapped in at
the end, so a failure or a kill before that loses nothing, and a re-run resumes the new one."""

import os

import numpy as np
import pytest

import _helpers_data_sim  # noqa: F401  (MUJOCO_GL=egl before any simulator loads)
from hma.data.sim import suite as suite_mod
from hma.data.sim.branches import BRANCHES_DIR
from hma.data.sim.suite import generate_suite
from hma.data.store import EpisodeStore, find_datasets, write_target
from hma.io import replace_folder

NAME = "gym_reacher"  # the cheapest simulator; 4 episodes hold out 1, which gets branches
KWARGS = dict(episodes=4, image_size=16, embodiments=[NAME])


def _snapshot(dataset):
    """Every file under ``dataset`` (its branches and token shards included), name -> bytes."""
    return {p.relative_to(dataset): p.read_bytes() for p in sorted(dataset.rglob("*")) if p.is_file()}


def _old_dataset(root):
    generate_suite("tiny", root, **KWARGS, seed=0, workers=1)
    shard = root / NAME / "tokens" / "tok-0123456789ab"  # stands in for a token shard: it must survive too
    shard.mkdir(parents=True)
    (shard / "tokens.json").write_text("{}")
    assert (root / NAME / BRANCHES_DIR / "metadata.json").is_file()
    return _snapshot(root / NAME)


def _fail_on_call(n, real, error=RuntimeError):
    calls = []

    def fails(*args, **kw):
        calls.append(1)
        if len(calls) == n:
            raise error("simulated failure")
        return real(*args, **kw)

    return fails, calls


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The seed-1 dataset written in one go, to compare the resumed replacement with."""
    root = tmp_path_factory.mktemp("straight")
    generate_suite("tiny", root, **KWARGS, seed=1, workers=1)
    return root / NAME


def test_a_failed_overwrite_keeps_the_old_dataset_and_the_rerun_resumes_the_new_one(tmp_path, monkeypatch, straight):
    old = _old_dataset(tmp_path)
    real_rollout, real_branches = suite_mod.rollout, suite_mod.generate_branches
    # Fails while generating the new episodes, then while generating the new branches.
    for name, real, n in (("rollout", real_rollout, 2), ("generate_branches", real_branches, 1)):
        fails, _ = _fail_on_call(n, real)
        monkeypatch.setattr(suite_mod, name, fails)
        with pytest.raises(RuntimeError, match="simulated failure"):
            generate_suite("tiny", tmp_path, **KWARGS, seed=1, overwrite=True, workers=1)
        monkeypatch.setattr(suite_mod, name, real)
        assert _snapshot(tmp_path / NAME) == old, name
        assert EpisodeStore(tmp_path / NAME, verify=True).meta["extra"]["seed"] == 0
        assert find_datasets([tmp_path]) == [tmp_path / NAME]  # the replacement being built is not listed
    # The re-run keeps the finished new episodes (no rollout), writes the branches, swaps.
    counting, calls = _fail_on_call(0, real_rollout)
    monkeypatch.setattr(suite_mod, "rollout", counting)
    generate_suite("tiny", tmp_path, **KWARGS, seed=1, overwrite=True, workers=1)
    assert calls == []
    new = EpisodeStore(tmp_path / NAME, verify=True)
    assert new.meta["extra"]["seed"] == 1 and not (tmp_path / NAME / "tokens").exists()
    for sub in ("", BRANCHES_DIR):
        np.testing.assert_array_equal(EpisodeStore(tmp_path / NAME / sub).frames, EpisodeStore(straight / sub).frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]  # no replacement, partial or old folder left


def test_a_failed_overwrite_by_a_pool_keeps_the_old_dataset(tmp_path, monkeypatch, straight):
    old = _old_dataset(tmp_path)
    fails, _ = _fail_on_call(1, suite_mod._Dataset.append_staged)  # in this process, after a job staged episodes
    monkeypatch.setattr(suite_mod._Dataset, "append_staged", fails)
    with pytest.raises(RuntimeError, match="simulated failure"):
        generate_suite("tiny", tmp_path, **KWARGS, seed=1, overwrite=True, workers=2)
    monkeypatch.undo()
    assert _snapshot(tmp_path / NAME) == old
    generate_suite("tiny", tmp_path, **KWARGS, seed=1, overwrite=True, workers=2)
    for sub in ("", BRANCHES_DIR):
        np.testing.assert_array_equal(EpisodeStore(tmp_path / NAME / sub).frames, EpisodeStore(straight / sub).frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def test_a_swap_killed_between_its_renames_puts_the_old_folder_back(tmp_path):
    out, new = tmp_path / "d", tmp_path / ".d.new"
    for folder, text in ((out, "old"), (new, "new")):
        folder.mkdir()
        (folder / "metadata.json").write_text(text)
    os.replace(out, tmp_path / ".d.old")  # the first rename of replace_folder, then a kill
    assert write_target(out, overwrite=True) == new  # the next run undoes it before it looks
    assert (out / "metadata.json").read_text() == "old" and not (tmp_path / ".d.old").exists()
    replace_folder(new, out)
    assert (out / "metadata.json").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["d"]
