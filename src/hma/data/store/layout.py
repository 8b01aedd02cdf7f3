"""The files of a dataset folder, what ``metadata.json`` records, and its checks (see :mod:`hma.data.store`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hma.errors import DataError
from hma.io import is_int

SCHEMA_VERSION = 1
METADATA_FILE = "metadata.json"
FRAMES_FILE = "frames.npy"
ACTIONS_FILE = "actions.npy"
EPISODE_STARTS_FILE = "episode_starts.npy"
SUCCESS_FILE = "success.npy"
STATE_FILE = "state.npy"
REWARD_FILE = "reward.npy"
PARTIAL_SUFFIX = ".partial"
STAGED_EPISODES_DIR = "episodes"  # under <out>.partial/: one file per finished episode
CAMERAS_DIR = "cameras"  # cameras/<name>.npy: one file per extra camera
CAMERA_NAME = re.compile(r"[A-Za-z0-9._-]+")  # a camera's name becomes a file name


def camera_file(name: str) -> str:
    """The file of extra camera ``name``, relative to the dataset folder (its key in metadata "files")."""
    return f"{CAMERAS_DIR}/{name}.npy"


@dataclass
class DatasetInfo:
    """What a dataset is, independent of its arrays; stored in ``metadata.json``."""

    embodiment: str
    simulator: str
    action_names: list[str]
    control_hz: float
    image_size: tuple[int, int]
    task: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    state_names: list[str] = field(default_factory=list)  # empty: the episodes carry no state
    camera: str = ""  # the primary camera's name (the one in frames.npy); "" when unnamed, e.g. simulated data
    cameras: dict[str, tuple[int, int]] = field(default_factory=dict)  # extra cameras: name -> (H, W)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)


def info_to_json(info: DatasetInfo) -> dict[str, Any]:
    """``info`` as metadata fields; the camera fields only when set, so datasets without them
    keep the metadata they always had."""
    out = {
        "embodiment": info.embodiment,
        "simulator": info.simulator,
        "task": info.task,
        "action_names": list(info.action_names),
        "control_hz": float(info.control_hz),
        "image_size": [int(info.image_size[0]), int(info.image_size[1])],
        "state_names": list(info.state_names),
        "extra": info.extra,
    }
    if info.camera:
        out["camera"] = info.camera
    if info.cameras:
        out["cameras"] = {name: [int(h), int(w)] for name, (h, w) in info.cameras.items()}
    return out


def check_cameras(camera: Any, cameras: Any, where: str) -> None:
    """Raise :class:`DataError` unless ``camera`` is a string and ``cameras`` maps valid names,
    none the primary's, to ``[height, width]``."""
    if not isinstance(camera, str):
        raise DataError(f"{where}: camera is {camera!r}, expected a string (the primary camera's name, '' when unnamed)")
    if not isinstance(cameras, dict):
        raise DataError(f"{where}: cameras is {cameras!r}, expected a mapping of camera name to [height, width]")
    for name, size in cameras.items():
        if not isinstance(name, str) or not CAMERA_NAME.fullmatch(name):
            raise DataError(f"{where}: camera name {name!r} is not valid, expected a non-empty name of letters, "
                            "digits, '.', '_' or '-' (it becomes a file name)")
        if name == camera:
            raise DataError(f"{where}: extra camera {name!r} has the primary camera's name, expected a name of its own")
        if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(is_int(v) and v > 0 for v in size):
            raise DataError(f"{where}: camera {name!r} has size {size!r}, expected [height, width] of positive integers")


def check_metadata_types(meta: dict[str, Any], path: Path) -> None:
    """Reject metadata whose fields have the wrong type, so no later access can crash."""
    def bad(key: str, expected: str) -> DataError:
        return DataError(f"{path}: field {key!r} is {meta.get(key)!r}, expected {expected}")

    if not isinstance(meta["embodiment"], str) or not meta["embodiment"]:
        raise bad("embodiment", "a non-empty string")
    if not isinstance(meta["simulator"], str):
        raise bad("simulator", "a string")
    names = meta["action_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise bad("action_names", "a non-empty list of strings")
    hz = meta["control_hz"]
    if not isinstance(hz, (int, float)) or isinstance(hz, bool) or not hz > 0:
        raise bad("control_hz", "a positive number")
    size = meta["image_size"]
    if not isinstance(size, list) or len(size) != 2 or not all(is_int(v) and v > 0 for v in size):
        raise bad("image_size", "[height, width] of positive integers")
    for key in ("num_episodes", "num_frames"):
        if not is_int(meta[key]) or meta[key] < 1:
            raise bad(key, "a positive integer")
    stats = meta["action_stats"]
    if not isinstance(stats, dict) or any(
        not isinstance(stats.get(k), list) or len(stats[k]) != len(names)
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in stats[k])
        for k in ("mean", "std", "min", "max")
    ):
        raise bad("action_stats", f"mean/std/min/max lists of {len(names)} numbers")
    cameras = meta.get("cameras", {})
    check_cameras(meta.get("camera", ""), cameras, str(path))
    files = meta["files"]
    if not isinstance(files, dict) or not all(
        isinstance(spec, dict) and is_int(spec.get("bytes")) and isinstance(spec.get("sha256"), str)
        for spec in files.values()
    ):
        raise bad("files", "a mapping of file name to {bytes, sha256}")
    camera_files = {camera_file(name) for name in cameras}
    if any(not isinstance(n, str) or (("/" in n or n.startswith(".")) and n not in camera_files) for n in files):
        raise bad("files", f"plain file names inside the dataset folder, or {CAMERAS_DIR}/<name>.npy of a camera in 'cameras'")
    state_names = meta.get("state_names", [])
    if not isinstance(state_names, list) or not all(isinstance(n, str) for n in state_names):
        raise bad("state_names", "a list of strings")
    if STATE_FILE in files and not state_names:
        raise bad("state_names", f"the names of the {STATE_FILE} columns")
    tasks = meta.get("episode_tasks")
    if tasks is not None and (not isinstance(tasks, list) or len(tasks) != meta["num_episodes"]
                              or not all(isinstance(t, str) for t in tasks)):
        raise bad("episode_tasks", f"a list of {meta['num_episodes']} strings, one per episode")


def action_statistics(actions: np.ndarray) -> dict[str, list[float]]:
    """Per-dimension mean/std/min/max, the statistics used to normalize actions."""
    actions = np.asarray(actions, dtype=np.float64)
    return {
        "mean": actions.mean(0).tolist(),
        "std": actions.std(0).tolist(),
        "min": actions.min(0).tolist(),
        "max": actions.max(0).tolist(),
    }


