"""Reading a finished dataset folder, memory-mapped (see :mod:`hma.data.store`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from hma.data.store.layout import (ACTIONS_FILE, EPISODE_STARTS_FILE, FRAMES_FILE, METADATA_FILE, PARTIAL_SUFFIX,
                                   REWARD_FILE, SCHEMA_VERSION, STATE_FILE, SUCCESS_FILE, DatasetInfo, camera_file,
                                   check_metadata_types)
from hma.errors import DataError
from hma.io import read_json, sha256_file

class EpisodeStore:
    """A finished dataset folder, memory-mapped.

    Opening checks the schema version, every file's presence and size, and the array
    shapes against ``metadata.json``; ``verify=True`` also checks SHA-256 checksums
    (reads every byte once).
    """

    def __init__(self, root: str | Path, *, verify: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            partial = self.root.with_name(self.root.name + PARTIAL_SUFFIX)
            hint = f" (found unfinished {partial.name}: re-run the command that writes it to resume)" if partial.exists() else ""
            raise DataError(f"dataset folder {self.root} does not exist{hint}")
        meta_path = self.root / METADATA_FILE
        if not meta_path.exists():
            raise DataError(f"{self.root} is not a complete hma dataset: {METADATA_FILE} is missing")
        meta = read_json(meta_path, "dataset metadata")
        if not isinstance(meta, dict):
            raise DataError(f"{meta_path} holds {type(meta).__name__}, expected a JSON object")
        version = meta.get("schema_version")
        if version != SCHEMA_VERSION:
            raise DataError(f"{meta_path}: unknown schema_version {version!r}, expected {SCHEMA_VERSION}")
        required = ["embodiment", "simulator", "action_names", "control_hz", "image_size", "num_episodes", "num_frames", "action_stats", "files"]
        missing = [k for k in required if k not in meta]
        if missing:
            raise DataError(f"{meta_path} lacks the field(s) {', '.join(missing)}")
        check_metadata_types(meta, meta_path)
        self.meta: dict[str, Any] = meta
        files = meta["files"]
        for name, spec in files.items():
            path = self.root / name
            if not path.is_file():
                raise DataError(f"{path} is missing (listed in {METADATA_FILE})")
            size = path.stat().st_size
            if size != spec.get("bytes"):
                raise DataError(f"{path} has {size} bytes, expected {spec.get('bytes')}: the file is truncated or was changed")
            if verify and sha256_file(path) != spec.get("sha256"):
                raise DataError(f"{path} fails its checksum: the file is corrupt or was changed")
        for name in (FRAMES_FILE, ACTIONS_FILE, EPISODE_STARTS_FILE, *map(camera_file, meta.get("cameras", {}))):
            if name not in files:
                raise DataError(f"{meta_path} lists no {name}")
        self.frames: np.ndarray = self._load(FRAMES_FILE)  # (N, H, W, 3) uint8, memmap
        self.actions: np.ndarray = self._load(ACTIONS_FILE)  # (N, A) float32
        self.episode_starts: np.ndarray = np.asarray(self._load(EPISODE_STARTS_FILE))  # (E + 1,)
        self.success: np.ndarray | None = self._load(SUCCESS_FILE) if SUCCESS_FILE in files else None
        self.state: np.ndarray | None = self._load(STATE_FILE) if STATE_FILE in files else None  # (N, S)
        self.reward: np.ndarray | None = self._load(REWARD_FILE) if REWARD_FILE in files else None  # (N,)
        # The extra cameras, name -> (N, H_c, W_c, 3) uint8 memmap; empty when the dataset has none.
        self.cameras: dict[str, np.ndarray] = {name: self._load(camera_file(name)) for name in meta.get("cameras", {})}
        self._check_shapes()

    def _load(self, name: str) -> np.ndarray:
        path = self.root / name
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{path} is not a readable .npy array ({e})") from None

    def _check_shapes(self) -> None:
        n, e = self.meta["num_frames"], self.meta["num_episodes"]
        h, w = self.image_size
        if self.frames.dtype != np.uint8 or self.frames.shape != (n, h, w, 3):
            raise DataError(f"{self.root / FRAMES_FILE} holds {self.frames.dtype}{list(self.frames.shape)}, expected uint8[{n}, {h}, {w}, 3]")
        if self.actions.dtype != np.float32 or self.actions.shape != (n, self.action_dim):
            raise DataError(f"{self.root / ACTIONS_FILE} holds {self.actions.dtype}{list(self.actions.shape)}, expected float32[{n}, {self.action_dim}]")
        s = self.episode_starts
        if s.shape != (e + 1,) or s[0] != 0 or s[-1] != n or (np.diff(s) <= 0).any():
            raise DataError(f"{self.root / EPISODE_STARTS_FILE} does not split {n} frames into {e} non-empty episodes")
        if self.success is not None and self.success.shape != (n,):
            raise DataError(f"{self.root / SUCCESS_FILE} has shape {list(self.success.shape)}, expected [{n}]")
        s_dim = len(self.state_names)
        if self.state is not None and (self.state.dtype != np.float32 or self.state.shape != (n, s_dim)):
            raise DataError(f"{self.root / STATE_FILE} holds {self.state.dtype}{list(self.state.shape)}, expected float32[{n}, {s_dim}]")
        if self.reward is not None and (self.reward.dtype != np.float32 or self.reward.shape != (n,)):
            raise DataError(f"{self.root / REWARD_FILE} holds {self.reward.dtype}{list(self.reward.shape)}, expected float32[{n}]")
        for name, frames in self.cameras.items():
            ch, cw = self.meta["cameras"][name]
            if frames.dtype != np.uint8 or frames.shape != (n, ch, cw, 3):
                raise DataError(f"{self.root / camera_file(name)} holds {frames.dtype}{list(frames.shape)}, expected uint8[{n}, {ch}, {cw}, 3]")

    # -- description -------------------------------------------------------------------
    @property
    def embodiment(self) -> str:
        return self.meta["embodiment"]

    @property
    def simulator(self) -> str:
        return self.meta["simulator"]

    @property
    def synthetic(self) -> bool:
        """Generated by a world model (``hma synth``) rather than recorded; ``meta["extra"]["synthetic"]``
        holds the run it came from (the only mark of datasets written before the flag)."""
        extra = self.meta.get("extra")
        recorded_run = isinstance(extra, dict) and isinstance(extra.get("synthetic"), dict)
        return self.meta.get("synthetic") is True or recorded_run

    @property
    def action_names(self) -> list[str]:
        return list(self.meta["action_names"])

    @property
    def action_dim(self) -> int:
        return len(self.meta["action_names"])

    @property
    def camera(self) -> str:
        """The primary camera's name (the one in ``frames``); "" when none was recorded."""
        return self.meta.get("camera", "")

    @property
    def state_names(self) -> list[str]:
        return list(self.meta.get("state_names", []))

    def episode_task(self, e: int) -> str:
        """Episode ``e``'s task string: its own when recorded, else the dataset's."""
        tasks = self.meta.get("episode_tasks")
        return tasks[e] if tasks is not None else self.meta.get("task", "")

    @property
    def control_hz(self) -> float:
        return float(self.meta["control_hz"])

    @property
    def image_size(self) -> tuple[int, int]:
        h, w = self.meta["image_size"]
        return int(h), int(w)

    @property
    def num_episodes(self) -> int:
        return int(self.meta["num_episodes"])

    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])

    @property
    def action_stats(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float32) for k, v in self.meta["action_stats"].items()}

    @property
    def info(self) -> DatasetInfo:
        m = self.meta
        return DatasetInfo(
            embodiment=m["embodiment"], simulator=m["simulator"], action_names=list(m["action_names"]),
            control_hz=float(m["control_hz"]), image_size=self.image_size, task=m.get("task", ""), extra=m.get("extra", {}),
            state_names=self.state_names, camera=self.camera,
            cameras={name: (int(h), int(w)) for name, (h, w) in m.get("cameras", {}).items()},
            synthetic=self.synthetic,
        )

    # -- access ------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.num_episodes

    def episode_length(self, e: int) -> int:
        return int(self.episode_starts[e + 1] - self.episode_starts[e])

    def episode_slice(self, e: int) -> slice:
        if not 0 <= e < self.num_episodes:
            raise IndexError(f"episode {e} out of range for {self.root} with {self.num_episodes} episodes")
        return slice(int(self.episode_starts[e]), int(self.episode_starts[e + 1]))

    def episode(self, e: int) -> dict[str, Any]:
        """Frames, actions (and success, state, reward where recorded, and ``cameras``: name ->
        frames when the dataset has extra cameras) of one episode, as memmap views."""
        sl = self.episode_slice(e)
        out: dict[str, Any] = {"frames": self.frames[sl], "actions": self.actions[sl]}
        for key, array in (("success", self.success), ("state", self.state), ("reward", self.reward)):
            if array is not None:
                out[key] = array[sl]
        if self.cameras:
            out["cameras"] = {name: frames[sl] for name, frames in self.cameras.items()}
        return out

    def episodes(self) -> Iterator[dict[str, Any]]:
        for e in range(self.num_episodes):
            yield self.episode(e)

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.root)!r}, embodiment={self.embodiment!r}, episodes={self.num_episodes}, frames={self.num_frames})"


def find_datasets(paths: Sequence[str | Path]) -> list[Path]:
    """Expand each path to dataset folders: a dataset itself, or a folder of datasets (hidden
    sub-folders, such as a replacement being built by ``hma data generate --overwrite``, left out)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / METADATA_FILE).exists():
            found.append(p)
        elif p.is_dir():
            subs = sorted(d for d in p.iterdir() if not d.name.startswith(".") and (d / METADATA_FILE).exists())
            if not subs:
                raise DataError(f"{p} holds no hma dataset (no {METADATA_FILE} in it or its sub-folders)")
            found.extend(subs)
        else:
            raise DataError(f"dataset path {p} does not exist")
    return found


def open_datasets(paths: Sequence[str | Path], *, verify: bool = False) -> list[EpisodeStore]:
    """Open every dataset under ``paths`` (see :func:`find_datasets`)."""
    return [EpisodeStore(p, verify=verify) for p in find_datasets(paths)]
