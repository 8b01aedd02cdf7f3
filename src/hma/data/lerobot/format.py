"""What a LeRobotDataset folder looks like, and checks of ``meta/info.json``.

Facts from huggingface/lerobot (v0.3.3 writes v2.1, v0.4+ writes v3.0):

- v2.1: ``data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet`` and
  ``videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4``, one
  file per episode; episodes listed in ``meta/episodes.jsonl``.
- v3.0: ``data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet`` and
  ``videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4``, many
  episodes per file; episodes listed in ``meta/episodes/chunk-*/file-*.parquet`` with
  the file indices and each episode's start/end time inside its mp4.

In both, one parquet row is one time step and the camera frame of row k of an episode
is the video frame presented at ``from_timestamp + k / fps`` (v2.1: from_timestamp = 0),
matched within ``TOLERANCE_S``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterator

import av
import pyarrow as pa

from hma.errors import DataError

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PARQUET_PATH = "meta/tasks.parquet"
EPISODES_JSONL_PATH = "meta/episodes.jsonl"
EPISODES_DIR = "meta/episodes"
EPISODES_PARQUET_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH_V3 = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH_V3 = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"

# LeRobot's nearest-frame lookup refuses a frame further than this from the query time.
TOLERANCE_S = 1e-4
# LeRobot's v3.0 writer defaults: files per chunk folder and file-size rollover limits.
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
CAMERA_DTYPES = ("video", "image")
# Far above any robot camera; bounds the time arithmetic of the frame lookup.
MAX_FPS = 10_000
# Columns every LeRobot data parquet has besides the user features.
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
ACTION_KEY = "action"
SUCCESS_KEY = "next.success"
STATE_KEY = "observation.state"
REWARD_KEY = "next.reward"
DEFAULT_CAMERA = "observation.images.main"


class Layout(Enum):
    """The two on-disk layouts; v2.0 differs from v2.1 only in its statistics files."""

    V2 = "v2"
    V3 = "v3"


_LAYOUTS = {"v2.0": Layout.V2, "v2.1": Layout.V2, "v3.0": Layout.V3}
_REQUIRED_KEYS = {
    Layout.V2: ("codebase_version", "fps", "features", "total_episodes", "chunks_size", "data_path", "video_path"),
    Layout.V3: ("codebase_version", "fps", "features", "total_episodes", "data_path", "video_path"),
}


@dataclass(frozen=True)
class Feature:
    """One entry of ``info.json["features"]``."""

    key: str
    dtype: str
    shape: tuple[int, ...]
    names: Any


@dataclass(frozen=True)
class Info:
    """The parts of ``meta/info.json`` the reader relies on, type-checked."""

    path: Path
    version: str
    layout: Layout
    fps: float
    robot_type: str | None
    total_episodes: int
    chunks_size: int | None
    data_path: str
    video_path: str | None
    features: dict[str, Feature]

    @property
    def cameras(self) -> list[str]:
        return [k for k, f in self.features.items() if f.dtype in CAMERA_DTYPES]


def parse_info(raw: Any, path: Path) -> Info:
    """Check a loaded ``info.json`` and return its fields; one DataError per problem."""
    if not isinstance(raw, dict):
        raise DataError(f"{path} holds {type(raw).__name__}, expected a JSON object")
    version = raw.get("codebase_version")
    if not isinstance(version, str) or version not in _LAYOUTS:
        raise DataError(f"{path}: unknown codebase_version {version!r}, expected one of {', '.join(_LAYOUTS)}")
    layout = _LAYOUTS[version]
    missing = [k for k in _REQUIRED_KEYS[layout] if k not in raw]
    if missing:
        raise DataError(f"{path} lacks the key(s) {', '.join(missing)} required by a {version} dataset")
    fps = raw["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= MAX_FPS:
        raise DataError(f"{path}: fps is {fps!r}, expected a positive number of frames per second up to {MAX_FPS}")
    robot_type = raw.get("robot_type")
    if robot_type is not None and not isinstance(robot_type, str):
        raise DataError(f"{path}: robot_type is {robot_type!r}, expected a string or null")
    total_episodes = _count(raw, "total_episodes", path)
    chunks_size = _count(raw, "chunks_size", path) if layout is Layout.V2 else None
    if chunks_size == 0:
        raise DataError(f"{path}: chunks_size is 0, expected a positive number of episodes per chunk")
    data_path = raw["data_path"]
    if not isinstance(data_path, str):
        raise DataError(f"{path}: data_path is {data_path!r}, expected a path template string")
    video_path = raw["video_path"]
    if video_path is not None and not isinstance(video_path, str):
        raise DataError(f"{path}: video_path is {video_path!r}, expected a path template string or null")
    features = raw["features"]
    if not isinstance(features, dict):
        raise DataError(f"{path}: features is {type(features).__name__}, expected an object of feature specs")
    return Info(
        path=path, version=version, layout=layout, fps=float(fps), robot_type=robot_type,
        total_episodes=total_episodes, chunks_size=chunks_size, data_path=data_path, video_path=video_path,
        features={k: _parse_feature(k, v, path) for k, v in features.items()},
    )


def _count(raw: dict[str, Any], key: str, path: Path) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataError(f"{path}: {key} is {value!r}, expected a non-negative integer")
    return value


def _parse_feature(key: str, spec: Any, path: Path) -> Feature:
    if not isinstance(spec, dict):
        raise DataError(f"{path}: feature {key!r} is {spec!r}, expected an object with dtype and shape")
    dtype, shape = spec.get("dtype"), spec.get("shape")
    if not isinstance(dtype, str):
        raise DataError(f"{path}: feature {key!r} has dtype {dtype!r}, expected a string such as 'float32' or 'video'")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise DataError(f"{path}: feature {key!r} has shape {shape!r}, expected a list of positive integers")
    return Feature(key=key, dtype=dtype, shape=tuple(shape), names=spec.get("names"))


def action_names(feature: Feature, path: Path) -> list[str]:
    """Per-dimension action names: a list, a dict of lists (older ports), else a0..aN."""
    return vector_names(feature, path, prefix="a")


def vector_names(feature: Feature, path: Path, *, prefix: str) -> list[str]:
    """Per-dimension names of a float vector feature: a list, a dict of lists (older ports),
    else PREFIX0..PREFIXN."""
    if len(feature.shape) != 1 or not feature.dtype.startswith("float"):
        raise DataError(f"{path}: feature {feature.key!r} is {feature.dtype}{list(feature.shape)}, expected a float "
                        "vector of shape [D]")
    (dim,) = feature.shape
    names = feature.names
    if names is None:
        return [f"{prefix}{i}" for i in range(dim)]
    if isinstance(names, dict):
        names = [n for group in names.values() if isinstance(group, list) for n in group]
    if not isinstance(names, list) or len(names) != dim or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: features.{feature.key}.names is {feature.names!r}, expected {dim} strings "
                        "(a list or a dict of lists)")
    return list(names)


def fill_template(template: str, path: Path, **fields: Any) -> str:
    """``template.format(**fields)``, turning a malformed template into a DataError."""
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: path template {template!r} cannot be filled with {sorted(fields)} ({e!r})") from None


@contextmanager
def guard(path: Path, what: str) -> Iterator[None]:
    """Turn decoder/IO exceptions raised inside the block into one DataError naming ``path``."""
    try:
        yield
    except DataError:
        raise
    except (av.FFmpegError, pa.ArrowException, OSError, EOFError, ValueError) as e:
        raise DataError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from None
