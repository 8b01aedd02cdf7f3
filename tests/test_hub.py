"""Runs and datasets by Hub name: resolved from a Hugging Face cache folder the test builds, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from _helpers_envs import make_store, make_trained_run
from _helpers_threads import one_thread
from hma.hub import is_hub_name, resolve

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hubrun")
    with one_thread():
        return make_trained_run(make_store(root / "toy", episodes=3, length=12), root)


def _cache_with(tmp_path, repo_dir: str, folder) -> os.PathLike:
    """The layout huggingface_hub keeps: REPO_DIR/refs/main -> COMMIT, REPO_DIR/snapshots/COMMIT/<files>."""
    cache = tmp_path / "hf-cache"
    snapshot = cache / repo_dir / "snapshots" / COMMIT
    shutil.copytree(folder, snapshot)
    (cache / repo_dir / "refs").mkdir(parents=True)
    (cache / repo_dir / "refs" / "main").write_text(COMMIT)
    return cache


def _offline(cache, cwd, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_load_by_hub_name_from_the_cache_offline(run, tmp_path):
    cache = _cache_with(tmp_path, "models--someorg--toy-run", run.path)
    work = tmp_path / "work"
    work.mkdir()
    code = "import hma; r = hma.load('someorg/toy-run'); print(r.path); print(sorted(r.embodiments))"
    done = _offline(cache, work, code)
    assert done.returncode == 0, done.stderr
    path, names = done.stdout.splitlines()
    assert path.endswith(f"snapshots/{COMMIT}") and names == str(sorted(run.embodiments))
    # A local folder of the same name wins over the Hub.
    shutil.copytree(run.path, work / "someorg" / "toy-run")
    done = _offline(cache, work, code)
    assert done.returncode == 0 and done.stdout.splitlines()[0] == "someorg/toy-run"
    # Not cached and offline: one line naming the name.
    done = _offline(cache, work, "from hma.cli import main; raise SystemExit(main(['eval', '--run', 'someorg/other', "
                                 "'--data', '.', '--out', 'x']))")
    assert done.returncode == 2 and "run 'someorg/other' is neither a local folder nor in the Hub cache" in done.stderr


def test_which_names_go_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_name("org/name") and is_hub_name("org/name.v2")
    assert not is_hub_name("./org/name") and not is_hub_name("/abs/path") and not is_hub_name("runs/tiny/x")
    assert not is_hub_name("plain")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not is_hub_name("org/name") and resolve("org/name").resolve() == (tmp_path / "org" / "name").resolve()


def test_import_lerobot_by_hub_name_from_the_cache_offline(tmp_path):
    from _helpers_lerobot import write_v30

    source = tmp_path / "src"
    write_v30(source, episodes=2, length=6, size=16, action_dim=2)
    cache = _cache_with(tmp_path, "datasets--someorg--toy-set", source)
    done = _offline(cache, tmp_path, "from hma.cli import main; raise SystemExit(main(['data', 'import-lerobot', "
                                     "'someorg/toy-set', 'out', '--no-progress']))")
    assert done.returncode == 0, done.stderr
    from hma.data.store import EpisodeStore

    assert EpisodeStore(tmp_path / "out").num_episodes == 2
