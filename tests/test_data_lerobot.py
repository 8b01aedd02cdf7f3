"""LeRobot import (v2.1, v3.0, image features) and v3.0 export with round trips."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from _helpers_lerobot import CAMERA, FPS, SECOND_CAMERA, episode_frames, psnr, write_v21, write_v30
from hma.data.lerobot import export_lerobot, import_lerobot, write_lerobot_v3
from hma.data.lerobot.format import DEFAULT_CAMERA
from hma.data.lerobot.stats import image_stats
from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter
from hma.errors import ConfigError, DataError

# Source videos are H.264 at crf 10; 32x32 frames with a sharp square lose ~37-38 dB.
IMPORT_MIN_PSNR = 34.0
ROUND_TRIP_MIN_PSNR = 30.0


def _check_import(store: EpisodeStore, synthetic, *, exact_frames: bool) -> None:
    assert store.num_episodes == len(synthetic.actions)
    for e in range(store.num_episodes):
        episode = store.episode(e)
        np.testing.assert_array_equal(episode["actions"], synthetic.actions[e])
        np.testing.assert_array_equal(episode["success"], synthetic.success[e])
        if exact_frames:
            np.testing.assert_array_equal(episode["frames"], synthetic.frames[e])
        else:
            assert psnr(episode["frames"], synthetic.frames[e]) > IMPORT_MIN_PSNR


@pytest.mark.parametrize("writer", [write_v21, write_v30], ids=["v2.1", "v3.0"])
def test_import_video_dataset(tmp_path, writer):
    synthetic = writer(tmp_path / "src")
    store = import_lerobot(tmp_path / "src", tmp_path / "native")
    _check_import(store, synthetic, exact_frames=False)
    assert store.embodiment == "toyarm"
    assert store.control_hz == FPS
    assert store.action_names == synthetic.action_names
    assert store.image_size == (32, 32)
    assert store.meta["task"] == "push the block"
    assert store.meta["extra"]["lerobot"]["camera"] == CAMERA


def test_import_v30_files_hold_several_episodes(tmp_path):
    # 5 episodes at 2 per file: offsets inside an mp4 and a third file with one episode.
    synthetic = write_v30(tmp_path / "src", episodes=5, episodes_per_file=2)
    assert len(list((tmp_path / "src/videos" / CAMERA).rglob("*.mp4"))) == 3
    store = import_lerobot(tmp_path / "src", tmp_path / "native")
    _check_import(store, synthetic, exact_frames=False)


@pytest.mark.parametrize("writer", [write_v21, write_v30], ids=["v2.1", "v3.0"])
def test_import_image_features_is_lossless(tmp_path, writer):
    synthetic = writer(tmp_path / "src", images=True)
    store = import_lerobot(tmp_path / "src", tmp_path / "native")
    _check_import(store, synthetic, exact_frames=True)


def test_camera_choice_and_resize(tmp_path):
    write_v21(tmp_path / "src")
    front = import_lerobot(tmp_path / "src", tmp_path / "front")
    wrist = import_lerobot(tmp_path / "src", tmp_path / "wrist", camera=SECOND_CAMERA, image_size=16)
    # The wrist camera's frames are the front ones with the blue channel raised by 60.
    assert wrist.image_size == (16, 16)
    assert wrist.frames[..., 2].mean() - front.frames[..., 2].mean() > 40
    with pytest.raises(DataError, match=r"camera 'observation.images.top' .*observation.images.front, observation.images.wrist"):
        import_lerobot(tmp_path / "src", tmp_path / "top", camera="observation.images.top")
    with pytest.raises(ConfigError, match="image_size"):
        import_lerobot(tmp_path / "src", tmp_path / "bad", image_size=0)


def test_embodiment_and_action_names_fallbacks(tmp_path):
    write_v21(tmp_path / "so100_pick", robot_type=None, names=None)
    store = import_lerobot(tmp_path / "so100_pick", tmp_path / "a")
    assert store.embodiment == "so100_pick"
    assert store.action_names == ["a0", "a1", "a2"]
    write_v21(tmp_path / "dict_names", names="dict")
    store = import_lerobot(tmp_path / "dict_names", tmp_path / "b", embodiment="koch")
    assert store.embodiment == "koch"
    assert store.action_names == ["joint0", "joint1", "joint2"]


def test_import_resumes_after_interruption(tmp_path):
    synthetic = write_v21(tmp_path / "src")
    done = import_lerobot(tmp_path / "src", tmp_path / "done")
    # A killed import leaves <out>.partial with its staged episodes. Stage a marked
    # episode 0 there: a resumed import keeps it instead of reading it again.
    staged = StoreWriter(tmp_path / "again", done.info)
    marked = np.asarray(done.episode(0)["actions"]) + 1.0
    staged.add_episode(np.asarray(done.episode(0)["frames"]), marked, np.asarray(done.episode(0)["success"]),
                       cameras={k: np.asarray(v) for k, v in done.episode(0)["cameras"].items()})
    resumed = import_lerobot(tmp_path / "src", tmp_path / "again")
    np.testing.assert_array_equal(resumed.episode(0)["actions"], marked)
    for e in range(1, resumed.num_episodes):
        np.testing.assert_array_equal(resumed.episode(e)["actions"], synthetic.actions[e])


def _native(tmp_path, *, success: bool = True, size: int = 32, control_hz: float = FPS) -> EpisodeStore:
    synthetic = write_v21(tmp_path / "lerobot_src", size=size)
    info = DatasetInfo(embodiment="toyarm", simulator="synthetic", action_names=synthetic.action_names,
                       control_hz=control_hz, image_size=(size, size), task="stack")
    writer = StoreWriter(tmp_path / "native", info)
    for e in range(len(synthetic.actions)):
        writer.add_episode(synthetic.frames[e], synthetic.actions[e], synthetic.success[e] if success else None)
    return writer.finalize()


@pytest.mark.parametrize("codec", ["libsvtav1", "libx264"])
def test_round_trip_native_to_v30_to_native(tmp_path, codec):
    native = _native(tmp_path)
    report = export_lerobot(native.root, tmp_path / "v30", codec=codec)
    print(f"\n{codec}: {report}")
    assert report.actions_identical and report.success_identical
    assert report.psnr_db > ROUND_TRIP_MIN_PSNR
    back = import_lerobot(tmp_path / "v30", tmp_path / "back")
    np.testing.assert_array_equal(back.actions, native.actions)
    np.testing.assert_array_equal(back.success, native.success)
    np.testing.assert_array_equal(back.episode_starts, native.episode_starts)
    assert psnr(back.frames, native.frames) == pytest.approx(report.psnr_db, abs=1e-6)
    assert back.action_names == native.action_names and back.control_hz == native.control_hz
    assert not (tmp_path / "v30.partial").exists()
    assert f"PSNR {report.psnr_db:.2f} dB" in str(report) and "actions identical" in str(report)


def test_export_layout_follows_v30(tmp_path):
    native = _native(tmp_path)
    out = tmp_path / "v30"
    export_lerobot(native.root, out, codec="libx264")
    info = json.loads((out / "meta/info.json").read_text())
    assert set(info) >= {"codebase_version", "robot_type", "total_episodes", "total_frames", "total_tasks", "chunks_size",
                         "data_files_size_in_mb", "video_files_size_in_mb", "fps", "splits", "data_path", "video_path", "features"}
    assert info["codebase_version"] == "v3.0" and info["total_frames"] == native.num_frames and info["fps"] == FPS
    assert info["features"][DEFAULT_CAMERA]["info"]["video.codec"] == "h264"
    tasks = pd.read_parquet(out / "meta/tasks.parquet")
    assert tasks.index.name == "task" and tasks.loc["stack", "task_index"] == 0
    stats = json.loads((out / "meta/stats.json").read_text())
    assert np.array(stats[DEFAULT_CAMERA]["mean"]).shape == (3, 1, 1)
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    np.testing.assert_allclose(stats["action"]["mean"], native.actions.mean(0), rtol=1e-5, atol=1e-6)
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["dataset_from_index"] for e in episodes] == native.episode_starts[:-1].tolist()
    data_file = pq.ParquetFile(out / "data/chunk-000/file-000.parquet")
    assert data_file.metadata.num_row_groups == native.num_episodes  # one row group per episode
    data = data_file.read()
    assert data.column("index").to_pylist() == list(range(native.num_frames))
    assert {"timestamp", "frame_index", "episode_index", "task_index", "action", "next.success"} <= set(data.column_names)
    # Every frame sits exactly at from_timestamp + k / fps in the shared mp4.
    with av.open(str(out / f"videos/{DEFAULT_CAMERA}/chunk-000/file-000.mp4")) as container:
        times = [frame.pts * frame.time_base for frame in container.decode(video=0)]
    expected = [Fraction(n, FPS) for n in range(native.num_frames)]
    assert times == expected
    for ep in episodes:
        start = ep[f"videos/{DEFAULT_CAMERA}/from_timestamp"]
        assert start == pytest.approx(ep["dataset_from_index"] / FPS)


def test_export_rolls_over_to_new_files(tmp_path):
    native = _native(tmp_path)
    # Limits far below one episode: every episode starts a new data file and mp4.
    report = write_lerobot_v3(native, tmp_path / "v30", codec="libx264", data_files_size_in_mb=1e-6, video_files_size_in_mb=1e-6)
    assert report.video_files == native.num_episodes and report.data_files == native.num_episodes
    assert len(list((tmp_path / "v30/data").rglob("*.parquet"))) == native.num_episodes
    back = import_lerobot(tmp_path / "v30", tmp_path / "back")
    np.testing.assert_array_equal(back.actions, native.actions)
    assert psnr(back.frames, native.frames) > ROUND_TRIP_MIN_PSNR


def test_export_rejects_bad_requests(tmp_path):
    native = _native(tmp_path, success=False)
    with pytest.raises(ConfigError, match="'nope'"):
        export_lerobot(native.root, tmp_path / "a", codec="nope")
    report = export_lerobot(native.root, tmp_path / "a", codec="libx264")
    assert report.success_identical is None
    with pytest.raises(DataError, match="already exists"):
        export_lerobot(native.root, tmp_path / "a", codec="libx264")


def test_export_rejects_fractional_rate(tmp_path):
    native = _native(tmp_path, control_hz=12.5)
    with pytest.raises(DataError, match="control_hz is 12.5"):
        export_lerobot(native.root, tmp_path / "a", codec="libx264")
    assert not (tmp_path / "a").exists() and not (tmp_path / "a.partial").exists()


def test_image_stats_match_numpy():
    frames = np.random.default_rng(0).integers(0, 256, size=(30, 8, 8, 3), dtype=np.uint8)
    stats = image_stats(frames)
    pixels = frames.reshape(-1, 3) / 255.0  # (P, 3)
    np.testing.assert_allclose(stats["mean"].ravel(), pixels.mean(0))
    np.testing.assert_allclose(stats["std"].ravel(), pixels.std(0))
    np.testing.assert_allclose(stats["q90"].ravel(), np.quantile(pixels, 0.9, axis=0, method="inverted_cdf"))
    assert stats["min"].shape == (3, 1, 1) and stats["count"].tolist() == [30]


def test_state_reward_and_per_episode_tasks_import_with_nothing_dropped(tmp_path):
    from _helpers_lerobot import write_v30

    tasks = ["push the block", "lift the cube", "push the block"]
    syn = write_v30(tmp_path / "src", episodes=3, length=6, size=16, action_dim=2, state_dim=5, tasks=tasks)
    store = import_lerobot(syn.root, tmp_path / "native")
    assert store.state_names == [f"joint_pos{i}" for i in range(5)]
    assert store.camera == CAMERA and list(store.cameras) == [SECOND_CAMERA]  # both cameras of the fixture
    for e in range(3):
        ep = store.episode(e)
        np.testing.assert_array_equal(ep["state"], syn.state[e])
        np.testing.assert_array_equal(ep["reward"], syn.reward[e])
        assert store.episode_task(e) == tasks[e]
        assert psnr(ep["cameras"][SECOND_CAMERA], episode_frames(e, len(ep["actions"]), 16, shade=60)) > ROUND_TRIP_MIN_PSNR


def test_export_carries_state_reward_and_tasks_under_lerobot_names_and_imports_back(tmp_path):
    import pyarrow.parquet as pq

    from hma.data.store import DatasetInfo, StoreWriter

    info = DatasetInfo(embodiment="toyarm", simulator="synthetic", action_names=["x", "y"], control_hz=10.0,
                       image_size=(16, 16), state_names=["q0", "q1", "q2"])
    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "native", info) as w:
        for e, task in enumerate(["reach left", "reach right"]):
            w.add_episode(rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8), rng.normal(size=(5, 2)),
                          state=rng.normal(size=(5, 3)), reward=rng.normal(size=5), task=task)
    export_lerobot(tmp_path / "native", tmp_path / "v30", codec="libx264")
    meta = json.loads((tmp_path / "v30" / "meta" / "info.json").read_text())
    assert meta["features"]["observation.state"] == {"dtype": "float32", "shape": [3], "names": ["q0", "q1", "q2"]}
    assert meta["features"]["next.reward"]["dtype"] == "float32" and meta["total_tasks"] == 2
    tasks = pq.read_table(tmp_path / "v30" / "meta" / "tasks.parquet").to_pandas()
    assert sorted(tasks.index) == ["reach left", "reach right"]
    back = import_lerobot(tmp_path / "v30", tmp_path / "back")
    original = EpisodeStore(tmp_path / "native")
    for e in range(2):
        np.testing.assert_array_equal(back.episode(e)["state"], original.episode(e)["state"])
        np.testing.assert_array_equal(back.episode(e)["reward"], original.episode(e)["reward"])
        assert back.episode_task(e) == original.episode_task(e)
    assert back.state_names == ["q0", "q1", "q2"]


def test_default_camera_is_a_scene_camera_and_the_cli_says_which(tmp_path, capsys):
    from hma.cli import main
    from hma.data.lerobot.reader import default_camera

    assert default_camera(["observation.images.wrist", "observation.images.front"]) == "observation.images.front"
    assert default_camera(["observation.images.hand_left", "observation.images.side"]) == "observation.images.side"
    assert default_camera(["observation.images.agentview", "observation.images.top"]) == "observation.images.top"
    assert default_camera(["observation.images.wrist"]) == "observation.images.wrist"
    write_v30(tmp_path / "src", episodes=2, length=4, size=16, action_dim=2)
    assert main(["data", "import-lerobot", str(tmp_path / "src"), str(tmp_path / "out"), "--no-progress"]) == 0
    assert (f"trains on camera {CAMERA} (of {CAMERA}, {SECOND_CAMERA}; --camera picks another); also kept: {SECOND_CAMERA}"
            in capsys.readouterr().out)


def test_export_quality_options_reach_the_video_and_its_metadata(tmp_path, capsys):
    from hma.cli import main

    native = import_lerobot(write_v30(tmp_path / "src", episodes=1, length=6, size=16, action_dim=2).root, tmp_path / "n")
    assert main(["data", "export-lerobot", str(native.root), str(tmp_path / "v30"), "--codec", "libx264",
                 "--crf", "28", "--gop", "4", "--no-progress"]) == 0
    video = json.loads((tmp_path / "v30" / "meta" / "info.json").read_text())["features"][CAMERA]["info"]
    assert video["video.crf"] == 28 and video["video.g"] == 4
    with pytest.raises(SystemExit) as err:
        main(["data", "export-lerobot", str(native.root), str(tmp_path / "bad"), "--crf", "-1"])
    assert err.value.code == 2 and "argument --crf: expected an integer >= 0, got -1" in capsys.readouterr().err


@pytest.mark.parametrize("writer,images", [(write_v21, False), (write_v30, False), (write_v30, True)],
                         ids=["v2.1", "v3.0", "v3.0-images"])
def test_a_dataset_with_two_cameras_imports_with_nothing_dropped(tmp_path, writer, images):
    synthetic = writer(tmp_path / "src", images=images)
    store = import_lerobot(tmp_path / "src", tmp_path / "native")
    _check_import(store, synthetic, exact_frames=images)
    assert store.camera == CAMERA and list(store.cameras) == [SECOND_CAMERA]
    assert store.meta["cameras"] == {SECOND_CAMERA: [32, 32]}
    for e in range(store.num_episodes):
        wrist = store.episode(e)["cameras"][SECOND_CAMERA]
        if images:  # the image fixture embeds the same PNGs for both cameras
            np.testing.assert_array_equal(wrist, synthetic.frames[e])
        else:  # the wrist video is the front one with its blue channel raised by 60
            assert psnr(wrist, episode_frames(e, len(wrist), 32, shade=60)) > IMPORT_MIN_PSNR
    only = import_lerobot(tmp_path / "src", tmp_path / "only", camera=SECOND_CAMERA, all_cameras=False)
    assert only.camera == SECOND_CAMERA and only.cameras == {} and "cameras" not in only.episode(0)


def test_export_writes_every_camera_with_lerobot_video_info_and_parquet_features(tmp_path):
    native = import_lerobot(write_v30(tmp_path / "src", episodes=3, length=6, size=16, action_dim=2).root, tmp_path / "n")
    report = write_lerobot_v3(native, tmp_path / "v30", codec="libx264")
    assert report.psnr_db > ROUND_TRIP_MIN_PSNR and report.video_files == 2  # one mp4 per camera
    info = json.loads((tmp_path / "v30" / "meta" / "info.json").read_text())
    for camera in (CAMERA, SECOND_CAMERA):
        feature = info["features"][camera]
        assert feature["dtype"] == "video" and feature["shape"] == [16, 16, 3]
        video = feature["info"]
        # Probed from the written mp4 as LeRobot does, under its current keys.
        assert {k: video[k] for k in ("video.height", "video.width", "video.codec", "video.pix_fmt", "video.fps",
                                      "video.channels", "has_audio", "is_depth_map")} == {
            "video.height": 16, "video.width": 16, "video.codec": "h264", "video.pix_fmt": "yuv420p", "video.fps": FPS,
            "video.channels": 3, "has_audio": False, "is_depth_map": False}
        assert "video.is_depth_map" not in video and video["video.video_backend"] == "pyav"
        assert (tmp_path / "v30" / "videos" / camera / "chunk-000" / "file-000.mp4").is_file()
    episodes = pq.read_table(tmp_path / "v30" / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    assert {f"videos/{SECOND_CAMERA}/from_timestamp", f"stats/{SECOND_CAMERA}/mean"} <= set(episodes.column_names)
    schema = pq.read_schema(tmp_path / "v30" / "data" / "chunk-000" / "file-000.parquet")
    hf = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert hf["action"] == {"feature": {"dtype": "float32", "_type": "Value"}, "length": 2, "_type": "List"}
    assert hf["frame_index"] == {"dtype": "int64", "_type": "Value"} and set(hf) == set(schema.names)
    back = import_lerobot(tmp_path / "v30", tmp_path / "back")
    assert back.camera == CAMERA and list(back.cameras) == [SECOND_CAMERA]
    for e in range(native.num_episodes):
        a, b = native.episode(e)["cameras"][SECOND_CAMERA], back.episode(e)["cameras"][SECOND_CAMERA]
        assert psnr(b, a) > ROUND_TRIP_MIN_PSNR
