"""Writing a native episode store as a LeRobotDataset v3.0 folder.

Episodes are packed as LeRobot v0.4+ packs them: each data parquet gets one row group per
episode and each mp4 holds consecutive episodes, both rolling over to the next file index
when the size limit would be crossed. All episodes of one mp4 are encoded as one stream
(rather than encoded apart and concatenated), so frame k of an episode is presented at
exactly ``from_timestamp + k / fps``. The folder is built as ``OUT.partial``, read back to
measure the round trip, then renamed to ``OUT``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hma.data.lerobot.format import (
    ACTION_KEY,
    CHUNKS_SIZE,
    DATA_FILES_SIZE_IN_MB,
    DATA_PATH_V3,
    DEFAULT_CAMERA,
    DEFAULT_FEATURES,
    EPISODES_PARQUET_PATH,
    INFO_PATH,
    REWARD_KEY,
    STATE_KEY,
    STATS_PATH,
    SUCCESS_KEY,
    TASKS_PARQUET_PATH,
    VIDEO_FILES_SIZE_IN_MB,
    VIDEO_PATH_V3,
)
from hma.data.lerobot.reader import LeRobotSource
from hma.data.lerobot.stats import Stats, aggregate, image_stats, to_lists, vector_stats
from hma.data.lerobot.video import PIX_FMT, Encoder, VideoWriter, probe_video, resolve_encoder
from hma.data.sim.registry import dataset_task
from hma.data.store import PARTIAL_SUFFIX, EpisodeStore
from hma.errors import DataError
from hma.io import atomic_write_json

CODEBASE_VERSION = "v3.0"
_MB = 1024 * 1024  # LeRobot's file-size limits are in MiB


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_lerobot` wrote and how faithfully it reads back."""

    source: Path
    out: Path
    codec: str
    crf: int
    num_episodes: int
    num_frames: int
    image_size: tuple[int, int]
    video_files: int
    video_bytes: int
    data_files: int
    psnr_db: float  # round-trip PSNR of all frames (inf when lossless)
    actions_identical: bool
    success_identical: bool | None  # None when the store has no success flags
    seconds: float

    def __str__(self) -> str:
        h, w = self.image_size
        success = "" if self.success_identical is None else (
            ", success flags identical" if self.success_identical else ", success flags DIFFER")
        return (
            f"Exported {self.num_episodes} episodes ({self.num_frames} frames, {w}x{h}) from {self.source} to "
            f"{self.out} as LeRobot {CODEBASE_VERSION}: {self.video_files} mp4 file(s) ({self.video_bytes / 1024:.1f} KiB, "
            f"{self.codec} crf {self.crf}) and {self.data_files} data file(s) in {self.seconds:.1f} s; round trip: "
            f"frame PSNR {self.psnr_db:.2f} dB, actions {'identical' if self.actions_identical else 'DIFFER'}{success}."
        )


def export_lerobot(src: str | Path, out: str | Path, *, codec: str = "libsvtav1", crf: int | None = None,
                   gop: int | None = None) -> ExportReport:
    """Write the native dataset at ``src`` as a LeRobotDataset v3.0 folder ``out``."""
    return write_lerobot_v3(EpisodeStore(src), out, codec=codec, crf=crf, gop=gop)


def write_lerobot_v3(store: EpisodeStore, out: str | Path, *, codec: str = "libsvtav1", crf: int | None = None,
                     gop: int | None = None, data_files_size_in_mb: float = DATA_FILES_SIZE_IN_MB,
                     video_files_size_in_mb: float = VIDEO_FILES_SIZE_IN_MB) -> ExportReport:
    """Export ``store``; the size limits decide when a new data/video file starts."""
    started = time.perf_counter()
    encoder = resolve_encoder(codec, crf=crf, gop=gop)
    fps = _integer_fps(store)
    camera, sizes = _video_sizes(store)
    out = Path(out)
    partial = _fresh_partial(out)
    features = _features(store, sizes, encoder=encoder, fps=fps, has_success=store.success is not None)
    data_files = _DataFiles(partial, _data_schema(store), limit_bytes=data_files_size_in_mb * _MB)
    video_files = {name: _VideoFiles(partial, name, encoder=encoder, fps=fps, size=size,
                                     limit_bytes=video_files_size_in_mb * _MB) for name, size in sizes.items()}
    episode_rows, episode_stats, task_index = _write_episodes(store, camera, fps=fps, data_files=data_files,
                                                              video_files=video_files)
    for name in sizes:  # what the first file of each camera holds, as LeRobot records it
        features[name]["info"] = {**features[name]["info"], **probe_video(partial / VIDEO_PATH_V3.format(
            video_key=name, chunk_index=0, file_index=0))}
    _write_meta(partial, episode_rows, episode_stats, task_index)
    atomic_write_json(partial / INFO_PATH, _info(store, features, fps=fps, num_tasks=len(task_index),
                                                 data_files_size_in_mb=data_files_size_in_mb,
                                                 video_files_size_in_mb=video_files_size_in_mb))
    psnr, actions_same, success_same = _round_trip(store, partial, camera)
    partial.rename(out)
    return ExportReport(
        source=store.root, out=out, codec=encoder.name, crf=encoder.crf, num_episodes=store.num_episodes,
        num_frames=store.num_frames, image_size=store.image_size, video_files=sum(f.count for f in video_files.values()),
        video_bytes=sum(p.stat().st_size for p in (out / "videos").rglob("*.mp4")), data_files=data_files.count,
        psnr_db=psnr, actions_identical=actions_same, success_identical=success_same,
        seconds=time.perf_counter() - started,
    )


def _video_sizes(store: EpisodeStore) -> tuple[str, dict[str, tuple[int, int]]]:
    """The primary camera and every camera's (height, width), the primary first: each becomes a video feature."""
    camera = store.camera or store.info.extra.get("lerobot", {}).get("camera") or DEFAULT_CAMERA
    sizes = {camera: store.image_size, **{name: tuple(a.shape[1:3]) for name, a in store.cameras.items()}}
    for name, (h, w) in sizes.items():
        if h % 2 or w % 2:
            raise DataError(f"{store.root}: {name} frames are {w}x{h}, expected even sides for {PIX_FMT} video")
    return camera, sizes


def _fresh_partial(out: Path) -> Path:
    """An empty ``OUT.partial`` folder to build the export in; ``out`` itself must not exist."""
    if out.exists():
        raise DataError(f"export folder {out} already exists, expected a new path")
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    if partial.exists():  # left by a killed export; nothing in it is reused
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def _write_episodes(store: EpisodeStore, camera: str, *, fps: int, data_files: _DataFiles,
                    video_files: dict[str, _VideoFiles]) -> tuple[list[dict[str, Any]], list[dict[str, Stats]], dict[str, int]]:
    """Every episode into the data and video files, which are closed after it; returns the
    meta/episodes rows, each episode's stats and the index of each task."""
    from hma.progress import bar

    # LeRobot indexes tasks: each distinct task string once, in order of first use.
    episode_tasks = [_task(store, e) for e in range(store.num_episodes)]
    task_index = {t: i for i, t in enumerate(dict.fromkeys(episode_tasks))}
    episode_rows, episode_stats = [], []
    for e in bar(range(store.num_episodes), desc="export-lerobot", unit="ep", leave=False):
        episode = store.episode(e)
        views = {camera: np.asarray(episode["frames"]), **episode.get("cameras", {})}  # name -> (T, H, W, 3)
        first, length = int(store.episode_starts[e]), len(episode["actions"])
        table = _episode_table(episode, index=e, first_row=first, fps=fps, task_index=task_index[episode_tasks[e]])
        data_chunk, data_file = data_files.add(table)
        stats = _episode_stats(table, views)
        episode_stats.append(stats)
        row = {"episode_index": e, "tasks": [episode_tasks[e]], "length": length,
               "data/chunk_index": data_chunk, "data/file_index": data_file,
               "dataset_from_index": first, "dataset_to_index": first + length}
        for name, frames in views.items():
            (video_chunk, video_file), start, end = video_files[name].add(np.asarray(frames))
            row |= {f"videos/{name}/chunk_index": video_chunk, f"videos/{name}/file_index": video_file,
                    f"videos/{name}/from_timestamp": start, f"videos/{name}/to_timestamp": end}
        for key, s in stats.items():
            row.update({f"stats/{key}/{name}": value for name, value in to_lists(s).items()})
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
        episode_rows.append(row)
    data_files.close()
    for files in video_files.values():
        files.close()
    return episode_rows, episode_stats, task_index


def _write_meta(partial: Path, episode_rows: list[dict[str, Any]], episode_stats: list[dict[str, Stats]],
                task_index: dict[str, int]) -> None:
    """meta/: the episodes parquet, the tasks parquet and the dataset's stats (info.json is :func:`_info`)."""
    episodes_path = partial / EPISODES_PARQUET_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), episodes_path, compression="snappy")
    tasks = pd.DataFrame({"task_index": np.arange(len(task_index), dtype=np.int64)},
                         index=pd.Index(list(task_index), name="task"))
    tasks.to_parquet(partial / TASKS_PARQUET_PATH)
    keys = episode_stats[0].keys()
    atomic_write_json(partial / STATS_PATH, {k: to_lists(aggregate([s[k] for s in episode_stats])) for k in keys})


def _info(store: EpisodeStore, features: dict[str, Any], *, fps: int, num_tasks: int, data_files_size_in_mb: float,
          video_files_size_in_mb: float) -> dict[str, Any]:
    """meta/info.json."""
    return {
        "codebase_version": CODEBASE_VERSION, "robot_type": store.embodiment, "total_episodes": store.num_episodes,
        "total_frames": store.num_frames, "total_tasks": num_tasks, "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": data_files_size_in_mb, "video_files_size_in_mb": video_files_size_in_mb,
        "fps": fps, "splits": {"train": f"0:{store.num_episodes}"}, "data_path": DATA_PATH_V3,
        "video_path": VIDEO_PATH_V3, "features": features,
    }


def _integer_fps(store: EpisodeStore) -> int:
    hz = store.control_hz
    if not (math.isfinite(hz) and hz > 0 and float(hz).is_integer()):
        raise DataError(f"{store.root}: control_hz is {hz}, expected a whole number of frames per second for a LeRobot fps")
    return int(hz)


def _task(store: EpisodeStore, e: int) -> str:
    # LeRobot needs a task string per frame; a store without one is described by its embodiment.
    # A simulated dataset's is its instruction (also for one that recorded only the simulator's id).
    task = store.episode_task(e) if store.meta.get("episode_tasks") is not None else dataset_task(store.meta)[0]
    return task or store.embodiment


def _features(store: EpisodeStore, sizes: dict[str, tuple[int, int]], *, encoder: Encoder, fps: int,
              has_success: bool) -> dict[str, Any]:
    """info.json's features. A video feature's ``info`` holds the encoder settings here; the
    stream's own properties are probed from the written files (:func:`probe_video`)."""
    features: dict[str, Any] = {ACTION_KEY: {"dtype": "float32", "shape": [store.action_dim], "names": store.action_names}}
    for name, (height, width) in sizes.items():
        features[name] = {
            "dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
            "info": {"is_depth_map": False, "video.fps": fps, "video.g": encoder.gop, "video.crf": encoder.crf,
                     "video.preset": encoder.options.get("preset"), "video.fast_decode": 0, "video.video_backend": "pyav",
                     "video.extra_options": {k: v for k, v in encoder.options.items() if k not in ("g", "crf", "preset")}},
        }
    if store.state is not None:
        features[STATE_KEY] = {"dtype": "float32", "shape": [len(store.state_names)], "names": store.state_names}
    if store.reward is not None:
        features[REWARD_KEY] = {"dtype": "float32", "shape": [1], "names": None}
    if has_success:
        features[SUCCESS_KEY] = {"dtype": "bool", "shape": [1], "names": None}
    return {**features, **DEFAULT_FEATURES}


def hf_features(schema: pa.Schema) -> dict[str, Any]:
    """The Hugging Face ``datasets`` features of a data parquet's columns, as ``datasets`` 4
    records them in the file's ``huggingface`` schema metadata (fixed-size lists: ``List``)."""
    def value(t: pa.DataType) -> dict[str, Any]:
        dtype = {pa.float32(): "float32", pa.float64(): "float64", pa.int64(): "int64", pa.bool_(): "bool"}[t]
        return {"dtype": dtype, "_type": "Value"}

    features = {}
    for field in schema:
        if pa.types.is_fixed_size_list(field.type):
            features[field.name] = {"feature": value(field.type.value_type), "length": field.type.list_size, "_type": "List"}
        else:
            features[field.name] = value(field.type)
    return features


def _data_schema(store: EpisodeStore) -> pa.Schema:
    """The data parquet's columns, their Hugging Face features in the metadata as ``datasets`` records them."""
    state_dim = len(store.state_names) if store.state is not None else 0
    fields = [pa.field(ACTION_KEY, pa.list_(pa.float32(), store.action_dim))]
    if state_dim:
        fields.append(pa.field(STATE_KEY, pa.list_(pa.float32(), state_dim)))
    if store.reward is not None:
        fields.append(pa.field(REWARD_KEY, pa.float32()))
    if store.success is not None:
        fields.append(pa.field(SUCCESS_KEY, pa.bool_()))
    fields += [
        pa.field("timestamp", pa.float32()),
        *(pa.field(k, pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")),
    ]
    schema = pa.schema(fields)
    return schema.with_metadata({b"huggingface": json.dumps({"info": {"features": hf_features(schema)}}).encode()})


def _episode_table(episode: dict[str, np.ndarray], *, index: int, first_row: int, fps: int,
                   task_index: int = 0) -> pa.Table:
    actions = np.asarray(episode["actions"], dtype=np.float32)  # (T, A)
    n, a = actions.shape
    frame_index = np.arange(n, dtype=np.int64)
    columns: dict[str, pa.Array] = {ACTION_KEY: pa.FixedSizeListArray.from_arrays(pa.array(actions.reshape(-1)), a)}
    if "state" in episode:
        state = np.asarray(episode["state"], dtype=np.float32)  # (T, S)
        columns[STATE_KEY] = pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), state.shape[1])
    if "reward" in episode:
        columns[REWARD_KEY] = pa.array(np.asarray(episode["reward"], dtype=np.float32))
    if "success" in episode:
        columns[SUCCESS_KEY] = pa.array(np.asarray(episode["success"], dtype=bool))
    columns |= {
        "timestamp": pa.array((frame_index / fps).astype(np.float32)),
        "frame_index": pa.array(frame_index),
        "episode_index": pa.array(np.full(n, index, dtype=np.int64)),
        "index": pa.array(first_row + frame_index),
        "task_index": pa.array(np.full(n, task_index, dtype=np.int64)),
    }
    return pa.table(columns)


def _episode_stats(table: pa.Table, views: dict[str, np.ndarray]) -> dict[str, Stats]:
    stats = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            values = column.flatten().to_numpy().reshape(len(column), -1)  # (T, D)
        else:
            values = column.to_numpy(zero_copy_only=False).reshape(-1, 1)  # (T, 1)
        stats[name] = vector_stats(values)
    for name, frames in views.items():
        stats[name] = image_stats(np.asarray(frames))
    return stats


def _next_file(chunk: int, file: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file + 1 == CHUNKS_SIZE else (chunk, file + 1)


class _DataFiles:
    """Data parquet files, one row group per episode, rolled over by size."""

    def __init__(self, root: Path, schema: pa.Schema, *, limit_bytes: float) -> None:
        self.root, self.schema, self.limit = root, schema, limit_bytes
        self.location = (0, 0)
        self.count = 0
        self._writer: pq.ParquetWriter | None = None
        self._size = 0

    def add(self, table: pa.Table) -> tuple[int, int]:
        # In-memory size bounds the compressed size from above, so files never exceed the limit.
        if self._writer is not None and self._size + table.nbytes >= self.limit:
            self._writer.close()
            self._writer = None
            self.location = _next_file(*self.location)
        if self._writer is None:
            path = self.root / DATA_PATH_V3.format(chunk_index=self.location[0], file_index=self.location[1])
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(path, self.schema, compression="snappy", use_dictionary=True)
            self._size = 0
            self.count += 1
        self._writer.write_table(table.cast(self.schema))
        self._size += table.nbytes
        return self.location

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class _VideoFiles:
    """The mp4 files of one camera, consecutive episodes per file, rolled over by size."""

    def __init__(self, root: Path, camera: str, *, encoder: Encoder, fps: int, size: tuple[int, int], limit_bytes: float) -> None:
        self.root, self.camera, self.encoder, self.fps, self.size, self.limit = root, camera, encoder, fps, size, limit_bytes
        self.location = (0, 0)
        self.count = 0
        self._writer: VideoWriter | None = None

    def add(self, frames_thw3: np.ndarray) -> tuple[tuple[int, int], float, float]:
        """Encode one episode; returns its (chunk, file) and its start/end time in that file."""
        w = self._writer
        if w is not None and w.num_frames:
            # The encoded size of this episode is unknown until it is written, so it is
            # estimated from the bytes per frame of the file so far.
            estimate = w.num_bytes / w.num_frames * len(frames_thw3)
            if w.num_bytes + estimate >= self.limit:
                w.close()
                self._writer = None
                self.location = _next_file(*self.location)
        if self._writer is None:
            path = self.root / VIDEO_PATH_V3.format(video_key=self.camera, chunk_index=self.location[0], file_index=self.location[1])
            self._writer = VideoWriter(path, encoder=self.encoder, fps=self.fps, height=self.size[0], width=self.size[1])
            self.count += 1
        start = self._writer.num_frames / self.fps
        self._writer.write(frames_thw3)
        return self.location, start, start + len(frames_thw3) / self.fps

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _round_trip(store: EpisodeStore, root: Path, camera: str) -> tuple[float, bool, bool | None]:
    """Read the written folder back: frame PSNR over all pixels of every camera, and whether actions/success match."""
    squared_error, pixels = 0.0, 0
    actions_same = True
    success_same = None if store.success is None else True
    with LeRobotSource(root, camera=camera, all_cameras=True) as source:
        for e, ref in enumerate(source.episodes):
            read, original = source.read_episode(ref), store.episode(e)
            pairs = [(read.frames, original["frames"])]
            pairs += [(read.cameras[name], frames) for name, frames in original.get("cameras", {}).items()]
            for got, expected in pairs:
                diff = got.astype(np.float64) - expected  # (T, H, W, 3)
                squared_error += float(np.square(diff).sum())
                pixels += diff.size
            actions_same &= bool(np.array_equal(read.actions, original["actions"]))
            if success_same is not None:
                success_same &= read.success is not None and bool(np.array_equal(read.success, original["success"]))
    mse = squared_error / pixels
    return (10 * math.log10(255.0**2 / mse) if mse > 0 else math.inf), actions_same, success_same
