import json

import numpy as np
import pytest

from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter, find_datasets, open_datasets
from hma.errors import DataError

from _helpers_files import flip_byte
from _helpers_store import make_store


def _info(**kw):
    base = dict(embodiment="toy", simulator="synthetic", action_names=["x", "y"], control_hz=10.0, image_size=(8, 8))
    base.update(kw)
    return DatasetInfo(**base)


def _episode(n=5, a=2, s=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (n, s, s, 3), dtype=np.uint8), rng.normal(size=(n, a)).astype(np.float32)


def test_round_trip_and_metadata(tmp_path):
    store = make_store(tmp_path / "d", episodes=3, length=7, success=True)
    assert store.num_episodes == 3 and store.num_frames == 21
    assert store.frames.shape == (21, 16, 16, 3) and store.frames.dtype == np.uint8
    assert isinstance(store.frames, np.memmap)
    assert store.actions.dtype == np.float32
    assert store.episode(1)["frames"].shape[0] == 7
    assert store.success is not None and store.success.dtype == bool
    meta = json.loads((tmp_path / "d" / "metadata.json").read_text())
    for key in ("schema_version", "embodiment", "simulator", "action_dim", "action_names", "control_hz",
                "image_size", "num_episodes", "num_frames", "action_stats", "files"):
        assert key in meta
    stats = store.action_stats
    np.testing.assert_allclose(stats["mean"], store.actions.mean(0), atol=1e-5)
    np.testing.assert_allclose(stats["max"], store.actions.max(0))
    assert all(len(f["sha256"]) == 64 for f in meta["files"].values())
    EpisodeStore(tmp_path / "d", verify=True)


def test_killed_writer_leaves_nothing_that_looks_complete_and_resumes(tmp_path):
    out = tmp_path / "d"
    w = StoreWriter(out, _info())
    f0, a0 = _episode(seed=0)
    w.add_episode(f0, a0)
    del w  # "killed" before finalize
    assert not out.exists()
    with pytest.raises(DataError, match="unfinished"):
        EpisodeStore(out)
    w = StoreWriter(out, _info())
    assert w.num_staged == 1
    f1, a1 = _episode(seed=1)
    w.add_episode(f1, a1)
    store = w.finalize()
    np.testing.assert_array_equal(store.frames[:5], f0)
    np.testing.assert_array_equal(store.actions[5:], a1)
    assert not (tmp_path / "d.partial").exists()


def test_staged_episodes_of_a_different_description_are_discarded(tmp_path):
    w = StoreWriter(tmp_path / "d", _info())
    w.add_episode(*_episode())
    w = StoreWriter(tmp_path / "d", _info(control_hz=20.0))
    assert w.num_staged == 0


def test_existing_dataset_needs_overwrite(tmp_path):
    make_store(tmp_path / "d")
    with pytest.raises(DataError, match="already exists"):
        StoreWriter(tmp_path / "d", _info())


@pytest.mark.parametrize(
    "frames, actions, match",
    [
        (np.zeros((5, 8, 8, 3), np.uint8), np.zeros((4, 2), np.float32), "5 frames but 4 actions"),
        (np.zeros((5, 8, 8, 3), np.float32), np.zeros((5, 2), np.float32), "dtype float32, expected uint8"),
        (np.zeros((5, 9, 8, 3), np.uint8), np.zeros((5, 2), np.float32), r"expected \(T, 8, 8, 3\)"),
        (np.zeros((5, 8, 8, 3), np.uint8), np.zeros((5, 3), np.float32), r"expected \(T, 2\)"),
        (np.zeros((5, 8, 8, 3), np.uint8), np.array([[0, 0]] * 2 + [[np.nan, 0]] + [[0, 0]] * 2, np.float32), "step 2"),
        (np.zeros((5, 8, 8, 3), np.uint8), np.array([[0, np.inf]] * 5, np.float32), "finite"),
    ],
)
def test_bad_episodes_are_rejected(tmp_path, frames, actions, match):
    w = StoreWriter(tmp_path / "d", _info())
    with pytest.raises(DataError, match=match):
        w.add_episode(frames, actions)


def test_reader_rejects_truncated_corrupt_and_unknown(tmp_path):
    root = tmp_path / "d"
    make_store(root)
    frames = root / "frames.npy"
    data = frames.read_bytes()
    # A flipped byte keeps the size: caught by the checksum.
    frames.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    EpisodeStore(root)
    with pytest.raises(DataError, match="checksum"):
        EpisodeStore(root, verify=True)
    frames.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        EpisodeStore(root)
    frames.unlink()
    with pytest.raises(DataError, match="frames.npy is missing"):
        EpisodeStore(root)


def test_reader_rejects_bad_metadata(tmp_path):
    root = tmp_path / "d"
    make_store(root)
    meta_path = root / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "schema_version": 99}))
    with pytest.raises(DataError, match="unknown schema_version 99"):
        EpisodeStore(root)
    meta_path.write_text(json.dumps({**meta, "num_frames": meta["num_frames"] + 1}))
    with pytest.raises(DataError, match="expected uint8"):
        EpisodeStore(root)
    meta_path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        EpisodeStore(root)
    meta_path.unlink()
    with pytest.raises(DataError, match="metadata.json is missing"):
        EpisodeStore(root)


def test_find_datasets(tmp_path):
    make_store(tmp_path / "suite" / "a", embodiment="a")
    make_store(tmp_path / "suite" / "b", embodiment="b")
    assert [p.name for p in find_datasets([tmp_path / "suite"])] == ["a", "b"]
    assert [s.embodiment for s in open_datasets([tmp_path / "suite" / "b"])] == ["b"]
    with pytest.raises(DataError, match="does not exist"):
        find_datasets([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no hma dataset"):
        find_datasets([tmp_path / "empty"])


def test_written_files_get_umask_permissions_not_owner_only(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        make_store(tmp_path / "d")
    finally:
        os.umask(mask)
    for f in ("metadata.json", "actions.npy", "episode_starts.npy"):
        mode = os.stat(tmp_path / "d" / f).st_mode
        assert mode & stat.S_IRGRP and mode & stat.S_IROTH, f


def test_state_reward_and_tasks_round_trip(tmp_path):
    info = _info(state_names=["q0", "q1", "q2"])
    rng = np.random.default_rng(0)
    episodes = []
    with StoreWriter(tmp_path / "d", info) as w:
        for e, n in enumerate((4, 6)):
            frames, actions = _episode(n, seed=e)
            state = rng.standard_normal((n, 3)).astype(np.float32)
            reward = rng.standard_normal(n).astype(np.float32)
            w.add_episode(frames, actions, state=state, reward=reward, task=f"task {e}")
            episodes.append((state, reward))
    store = EpisodeStore(tmp_path / "d", verify=True)
    assert store.state_names == ["q0", "q1", "q2"] and store.info.state_names == ["q0", "q1", "q2"]
    for e, (state, reward) in enumerate(episodes):
        ep = store.episode(e)
        np.testing.assert_array_equal(ep["state"], state)
        np.testing.assert_array_equal(ep["reward"], reward)
        assert store.episode_task(e) == f"task {e}"
    assert store.meta["has_state"] and store.meta["has_reward"]


def test_state_and_reward_are_checked_and_optional(tmp_path):
    frames, actions = _episode(4)
    with StoreWriter(tmp_path / "plain", _info()) as w:
        w.add_episode(frames, actions)
        with pytest.raises(DataError, match="names no state dimensions"):
            w.add_episode(frames, actions, state=np.zeros((4, 2)))
    plain = EpisodeStore(tmp_path / "plain")
    assert plain.state is None and plain.reward is None and "state" not in plain.episode(0)
    assert plain.episode_task(0) == plain.meta["task"]
    w = StoreWriter(tmp_path / "bad", _info(state_names=["a", "b"]))
    for kwargs, match in ((dict(state=np.zeros((4, 3))), r"state has shape \(4, 3\), expected \(4, 2\)"),
                          (dict(state=np.full((4, 2), np.nan)), "state at step 0 is not finite"),
                          (dict(reward=np.zeros(3)), r"reward has shape \(3,\), expected \(4,\)"),
                          (dict(reward=np.array([0, 1, np.inf, 0])), "reward at step 2 is inf")):
        with pytest.raises(DataError, match=match):
            w.add_episode(frames, actions, **kwargs)


CAMERAS = {"wrist": (6, 10), "side": (4, 4)}


def _cameras(n, seed=0, sizes=CAMERAS):
    rng = np.random.default_rng(100 + seed)
    return {name: rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8) for name, (h, w) in sizes.items()}


def test_extra_cameras_round_trip_and_are_verified(tmp_path):
    root = tmp_path / "d"
    info = _info(camera="top", cameras=CAMERAS)
    written = []
    with StoreWriter(root, info) as w:
        for e, n in enumerate((4, 6)):
            cameras = _cameras(n, seed=e)
            w.add_episode(*_episode(n, seed=e), cameras=cameras)
            written.append(cameras)
    store = EpisodeStore(root, verify=True)
    assert store.camera == "top" and store.info == info
    assert list(store.cameras) == ["wrist", "side"]
    assert store.cameras["wrist"].shape == (10, 6, 10, 3) and store.cameras["side"].shape == (10, 4, 4, 3)
    assert all(isinstance(c, np.memmap) and not c.flags.writeable for c in store.cameras.values())
    for e, cameras in enumerate(written):
        ep = store.episode(e)
        assert set(ep["cameras"]) == set(CAMERAS)
        for name, frames in cameras.items():
            np.testing.assert_array_equal(ep["cameras"][name], frames)
    meta = json.loads((root / "metadata.json").read_text())
    assert meta["camera"] == "top" and meta["cameras"] == {"wrist": [6, 10], "side": [4, 4]}
    assert {"cameras/wrist.npy", "cameras/side.npy"} <= set(meta["files"])
    flip_byte(root / "cameras" / "side.npy", 0.9, 0x55)
    EpisodeStore(root)
    with pytest.raises(DataError, match=r"cameras/side\.npy fails its checksum"):
        EpisodeStore(root, verify=True)
    wrist = root / "cameras" / "wrist.npy"
    wrist.write_bytes(wrist.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"cameras/wrist\.npy has \d+ bytes, .* truncated"):
        EpisodeStore(root)
    wrist.unlink()
    with pytest.raises(DataError, match=r"cameras/wrist\.npy is missing"):
        EpisodeStore(root)


def test_killed_writer_resumes_with_cameras(tmp_path):
    out = tmp_path / "d"
    info = _info(cameras=CAMERAS)
    w = StoreWriter(out, info)
    written = [_cameras(n, seed=e) for e, n in enumerate((3, 5, 4))]
    for e in range(2):
        w.add_episode(*_episode(len(written[e]["wrist"]), seed=e), cameras=written[e])
    del w  # "killed" before finalize
    w = StoreWriter(out, info)
    assert w.num_staged == 2
    w.add_episode(*_episode(4, seed=2), cameras=written[2])
    store = w.finalize()
    assert store.num_episodes == 3 and store.num_frames == 12
    for e, cameras in enumerate(written):
        for name, frames in cameras.items():
            np.testing.assert_array_equal(store.episode(e)["cameras"][name], frames)


@pytest.mark.parametrize(
    "cameras, match",
    [
        (None, "camera 'wrist' was not given, expected every declared camera"),
        ({"wrist": _cameras(4)["wrist"]}, "camera 'side' was not given"),
        ({**_cameras(4), "top": _cameras(4)["side"]}, r"camera 'top' is not declared .*\(declared: wrist, side\)"),
        ({**_cameras(4), "wrist": np.zeros((4, 6, 9, 3), np.uint8)},
         r"camera 'wrist' frames have shape \(4, 6, 9, 3\), expected \(4, 6, 10, 3\)"),
        ({**_cameras(4), "side": np.zeros((3, 4, 4, 3), np.uint8)},
         r"camera 'side' frames have shape \(3, 4, 4, 3\), expected \(4, 4, 4, 3\)"),
        ({**_cameras(4), "wrist": np.zeros((4, 6, 10, 3), np.float32)}, "camera 'wrist' frames have dtype float32, expected uint8"),
    ],
)
def test_bad_camera_frames_are_rejected(tmp_path, cameras, match):
    w = StoreWriter(tmp_path / "d", _info(cameras=CAMERAS))
    with pytest.raises(DataError, match=match):
        w.add_episode(*_episode(4), cameras=cameras)
    assert w.num_staged == 0


def test_cameras_need_declaring(tmp_path):
    w = StoreWriter(tmp_path / "d", _info())
    with pytest.raises(DataError, match=r"camera 'wrist' is not declared .*\(declared: none\)"):
        w.add_episode(*_episode(4), cameras={"wrist": _cameras(4)["wrist"]})


@pytest.mark.parametrize(
    "camera, cameras, match",
    [
        ("top", {"": (4, 4)}, "camera name '' is not valid, expected a non-empty name"),
        ("top", {"a/b": (4, 4)}, "camera name 'a/b' is not valid"),
        ("top", {"left eye": (4, 4)}, "camera name 'left eye' is not valid"),
        ("top", {"top": (4, 4)}, "extra camera 'top' has the primary camera's name"),
        ("top", {"wrist": (0, 4)}, r"camera 'wrist' has size \(0, 4\), expected \[height, width\] of positive integers"),
        (7, {}, "camera is 7, expected a string"),
    ],
)
def test_bad_camera_names_are_rejected(tmp_path, camera, cameras, match):
    with pytest.raises(DataError, match=match):
        StoreWriter(tmp_path / "d", _info(camera=camera, cameras=cameras))
    assert not (tmp_path / "d.partial").exists()


def test_reader_rejects_bad_camera_metadata(tmp_path):
    root = tmp_path / "d"
    with StoreWriter(root, _info(camera="top", cameras=CAMERAS)) as w:
        w.add_episode(*_episode(4), cameras=_cameras(4))
    meta_path = root / "metadata.json"
    meta = json.loads(meta_path.read_text())
    for change, match in (({"cameras": {"../escape": [4, 4]}}, "camera name '../escape' is not valid"),
                          ({"cameras": {**meta["cameras"], "top": [4, 4]}}, "extra camera 'top' has the primary"),
                          ({"cameras": {"wrist": [6, 10]}}, r"field 'files' .* of a camera in 'cameras'"),
                          ({"cameras": {**meta["cameras"], "back": [4, 4]}}, r"lists no cameras/back\.npy"),
                          ({"cameras": {"wrist": [6, 10], "side": [4, 5]}}, r"side\.npy holds uint8\[4, 4, 4, 3\], expected uint8\[4, 4, 5, 3\]"),
                          ({"camera": ["top"]}, r"camera is \['top'\], expected a string")):
        meta_path.write_text(json.dumps({**meta, **change}))
        with pytest.raises(DataError, match=match):
            EpisodeStore(root)


def test_store_without_cameras_writes_the_metadata_it_always_did(tmp_path):
    store = make_store(tmp_path / "d", episodes=2, length=4)
    meta = json.loads((tmp_path / "d" / "metadata.json").read_text())
    assert set(meta) == {"schema_version", "embodiment", "simulator", "task", "action_names", "control_hz", "image_size",
                         "state_names", "extra", "action_dim", "num_episodes", "num_frames", "has_success", "has_state",
                         "has_reward", "action_stats", "files", "created"}
    assert set(meta["files"]) == {"frames.npy", "actions.npy", "episode_starts.npy"}
    assert not (tmp_path / "d" / "cameras").exists()
    assert store.camera == "" and store.cameras == {} and store.info.cameras == {}
    assert set(store.episode(0)) == {"frames", "actions"}
    with StoreWriter(tmp_path / "named", _info(camera="top")) as w:
        w.add_episode(*_episode(4))
    meta = json.loads((tmp_path / "named" / "metadata.json").read_text())
    assert meta["camera"] == "top" and "cameras" not in meta
    assert EpisodeStore(tmp_path / "named").camera == "top"
