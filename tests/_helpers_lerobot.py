"""Tiny LeRobotDataset folders (v2.1 and v3.0) written from scratch for the LeRobot tests.

These writers follow the on-disk format directly (pyarrow, pandas, PyAV) and share no
code with hma.data.lerobot, so the importer is checked against an independent writer.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

CAMERA = "observation.images.front"
SECOND_CAMERA = "observation.images.wrist"
FPS = 10


@dataclass
class Synthetic:
    """What a synthetic dataset holds, to compare an import against."""

    root: Path
    frames: list[np.ndarray]  # per episode (T, H, W, 3) uint8
    actions: list[np.ndarray]  # per episode (T, A) float32
    success: list[np.ndarray]  # per episode (T,) bool
    action_names: list[str]
    state: list[np.ndarray] | None = None  # per episode (T, S) float32, observation.state
    reward: list[np.ndarray] | None = None  # per episode (T,) float32, next.reward
    tasks: list[str] | None = None  # per episode


def _state_and_reward(e: int, actions: np.ndarray, state_dim: int) -> tuple[np.ndarray, np.ndarray]:
    state = np.random.default_rng(100 + e).standard_normal((len(actions), state_dim)).astype(np.float32)
    return state, (2.0 * actions[:, 0]).astype(np.float32)


def episode_frames(episode: int, length: int, size: int, *, shade: int = 0) -> np.ndarray:
    """A smooth gradient with a square moving 2 pixels per frame (video-codec friendly)."""
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([40 + xx * 96 // size, 60 + yy * 96 // size, np.full_like(xx, 128 + shade)], -1).astype(np.uint8)
    frames = np.repeat(base[None], length, 0)  # (T, H, W, 3)
    side = size // 4
    for t in range(length):
        x = (2 * t + 4 * episode) % (size - side)
        frames[t, side : 2 * side, x : x + side] = (220, 200, 80)
    return frames


def make_content(episodes: int, length: int, size: int, action_dim: int, seed: int) -> tuple[list, list, list]:
    rng = np.random.default_rng(seed)
    lengths = [length + e for e in range(episodes)]  # unequal lengths catch off-by-one offsets
    frames = [episode_frames(e, n, size) for e, n in enumerate(lengths)]
    actions = [rng.normal(size=(n, action_dim)).astype(np.float32) for n in lengths]
    success = [np.arange(n) >= n - 2 for n in lengths]
    return frames, actions, success


def encode_mp4(path: Path, frames_thw3: np.ndarray, fps: int = FPS) -> None:
    """Constant-frame-rate H.264 (no B-frames), frame n at n / fps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "10", "g": "2", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = frames_thw3.shape[2], frames_thw3.shape[1], "yuv420p"
        for n, frame_hw3 in enumerate(frames_thw3):
            frame = av.VideoFrame.from_ndarray(frame_hw3, format="rgb24")
            frame.pts, frame.time_base = n, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def png_bytes(frame_hw3: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame_hw3).save(buf, format="PNG")
    return buf.getvalue()


def _features(action_dim: int, size: int, camera_dtype: str, names: object) -> dict:
    cam = {"dtype": camera_dtype, "shape": [size, size, 3], "names": ["height", "width", "channels"]}
    return {
        "action": {"dtype": "float32", "shape": [action_dim], "names": names},
        CAMERA: cam,
        SECOND_CAMERA: dict(cam),
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }


def _rows(e: int, first: int, frames: np.ndarray, actions: np.ndarray, success: np.ndarray, images: bool,
          state_dim: int = 0, task_index: int = 0) -> pa.Table:
    n, a = actions.shape
    columns = {
        "action": pa.FixedSizeListArray.from_arrays(pa.array(actions.reshape(-1)), a),
        "next.success": pa.array(success),
        "timestamp": pa.array((np.arange(n) / FPS).astype(np.float32)),
        "frame_index": pa.array(np.arange(n, dtype=np.int64)),
        "episode_index": pa.array(np.full(n, e, dtype=np.int64)),
        "index": pa.array(first + np.arange(n, dtype=np.int64)),
        "task_index": pa.array(np.full(n, task_index, dtype=np.int64)),
    }
    if state_dim:
        state, reward = _state_and_reward(e, actions, state_dim)
        columns["observation.state"] = pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), state_dim)
        columns["next.reward"] = pa.array(reward)
    if images:
        structs = [{"bytes": png_bytes(f), "path": f"frame_{k:06d}.png"} for k, f in enumerate(frames)]
        for key in (CAMERA, SECOND_CAMERA):
            columns[key] = pa.array(structs, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    return pa.table(columns)


def write_v21(
    root: Path, *, episodes: int = 3, length: int = 8, size: int = 32, action_dim: int = 3,
    images: bool = False, names: object = "list", robot_type: str | None = "toyarm", seed: int = 0,
) -> Synthetic:
    """A v2.1 dataset: one parquet and one mp4 per episode, jsonl metadata."""
    frames, actions, success = make_content(episodes, length, size, action_dim, seed)
    action_names = [f"joint{i}" for i in range(action_dim)]
    names_json = {"motors": action_names} if names == "dict" else (None if names is None else action_names)
    first = 0
    episode_lines = []
    for e in range(episodes):
        pq.write_table(_rows(e, first, frames[e], actions[e], success[e], images), _mk(root / f"data/chunk-000/episode_{e:06d}.parquet"))
        if not images:
            for shade, key in ((0, CAMERA), (60, SECOND_CAMERA)):
                cam_frames = frames[e] if shade == 0 else episode_frames(e, len(frames[e]), size, shade=shade)
                encode_mp4(root / f"videos/chunk-000/{key}/episode_{e:06d}.mp4", cam_frames)
        episode_lines.append({"episode_index": e, "tasks": ["push the block"], "length": len(actions[e])})
        first += len(actions[e])
    info = {
        "codebase_version": "v2.1", "robot_type": robot_type, "total_episodes": episodes, "total_frames": first,
        "total_tasks": 1, "total_videos": 0 if images else 2 * episodes, "total_chunks": 1, "chunks_size": 1000,
        "fps": FPS, "splits": {"train": f"0:{episodes}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": None if images else "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": _features(action_dim, size, "image" if images else "video", names_json),
    }
    _mk(root / "meta/info.json").write_text(json.dumps(info, indent=2))
    (root / "meta/episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in episode_lines))
    (root / "meta/tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "push the block"}) + "\n")
    return Synthetic(root, frames, actions, success, action_names)


def write_v30(
    root: Path, *, episodes: int = 3, length: int = 8, size: int = 32, action_dim: int = 3,
    images: bool = False, episodes_per_file: int = 2, seed: int = 0, state_dim: int = 0,
    tasks: list[str] | None = None,
) -> Synthetic:
    """A v3.0 dataset: ``episodes_per_file`` episodes per data parquet and per mp4; with
    ``state_dim``, an observation.state and a next.reward; ``tasks``: one task string per episode."""
    frames, actions, success = make_content(episodes, length, size, action_dim, seed)
    tasks = tasks or ["push the block"] * episodes
    task_index = {t: i for i, t in enumerate(dict.fromkeys(tasks))}
    action_names = [f"joint{i}" for i in range(action_dim)]
    rows, first = [], 0
    for file_index, group in enumerate(range(0, episodes, episodes_per_file)):
        members = list(range(group, min(group + episodes_per_file, episodes)))
        tables, t0 = [], 0.0
        for e in members:
            tables.append(_rows(e, first, frames[e], actions[e], success[e], images, state_dim, task_index[tasks[e]]))
            row = {
                "episode_index": e, "tasks": [tasks[e]], "length": len(actions[e]),
                "data/chunk_index": 0, "data/file_index": file_index,
                "dataset_from_index": first, "dataset_to_index": first + len(actions[e]),
            }
            if not images:
                for key in (CAMERA, SECOND_CAMERA):
                    row |= {f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": file_index,
                            f"videos/{key}/from_timestamp": t0, f"videos/{key}/to_timestamp": t0 + len(actions[e]) / FPS}
            row |= {"stats/action/mean": actions[e].mean(0).tolist(), "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            rows.append(row)
            t0 += len(actions[e]) / FPS
            first += len(actions[e])
        pq.write_table(pa.concat_tables(tables), _mk(root / f"data/chunk-000/file-{file_index:03d}.parquet"))
        if not images:
            stacked = np.concatenate([frames[e] for e in members])
            encode_mp4(root / f"videos/{CAMERA}/chunk-000/file-{file_index:03d}.mp4", stacked)
            other = np.concatenate([episode_frames(e, len(frames[e]), size, shade=60) for e in members])
            encode_mp4(root / f"videos/{SECOND_CAMERA}/chunk-000/file-{file_index:03d}.mp4", other)
    pq.write_table(pa.Table.from_pylist(rows), _mk(root / "meta/episodes/chunk-000/file-000.parquet"))
    pd.DataFrame({"task_index": list(task_index.values())},
                 index=pd.Index(list(task_index), name="task")).to_parquet(root / "meta/tasks.parquet")
    features = _features(action_dim, size, "image" if images else "video", action_names)
    if state_dim:
        features["observation.state"] = {"dtype": "float32", "shape": [state_dim],
                                         "names": [f"joint_pos{i}" for i in range(state_dim)]}
        features["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    info = {
        "codebase_version": "v3.0", "robot_type": "toyarm", "total_episodes": episodes, "total_frames": first,
        "total_tasks": len(task_index), "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
        "fps": FPS, "splits": {"train": f"0:{episodes}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": None if images else "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": features,
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=2))
    extra = [_state_and_reward(e, actions[e], state_dim) for e in range(episodes)] if state_dim else None
    return Synthetic(root, frames, actions, success, action_names,
                     state=[s for s, _ in extra] if extra else None, reward=[r for _, r in extra] if extra else None,
                     tasks=tasks)


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
