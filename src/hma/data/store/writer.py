"""Writing a dataset: episodes staged one file each under ``<out>.partial/``, then the arrays,
then ``metadata.json``, then one rename (see :mod:`hma.data.store`)."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from pathlib import Path

import numpy as np

from hma.data.store.layout import (ACTIONS_FILE, EPISODE_STARTS_FILE, FRAMES_FILE, METADATA_FILE, PARTIAL_SUFFIX,
                                   REWARD_FILE, SCHEMA_VERSION, STAGED_EPISODES_DIR, STATE_FILE, SUCCESS_FILE,
                                   DatasetInfo, action_statistics, camera_file, check_cameras, info_to_json)
from hma.data.store.reader import EpisodeStore
from hma.errors import DataError
from hma.io import atomic_save_npy, atomic_write_json, finish_replace, read_json, replace_folder, sha256_file

STAGED_CAMERA_PREFIX = "camera."  # a staged episode's key of extra camera <name> is camera.<name>


def _dtype(values: object) -> str:
    """The dtype an error names: an array's own, else the type of what came instead."""
    return str(values.dtype) if isinstance(values, np.ndarray) else type(values).__name__


def validate_episode(
    frames: np.ndarray,
    actions: np.ndarray,
    *,
    image_size: tuple[int, int],
    action_dim: int,
    success: np.ndarray | None = None,
    state: np.ndarray | None = None,
    state_dim: int | None = None,
    reward: np.ndarray | None = None,
    where: str = "episode",
) -> None:
    """Raise :class:`DataError` with one clear sentence if an episode is malformed."""
    h, w = image_size
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise DataError(f"{where}: frames have dtype {_dtype(frames)}, expected uint8")
    if frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
        raise DataError(f"{where}: frames have shape {tuple(frames.shape)}, expected (T, {h}, {w}, 3)")
    if not isinstance(actions, np.ndarray) or actions.ndim != 2 or actions.shape[1] != action_dim:
        shape = actions.shape if isinstance(actions, np.ndarray) else np.shape(actions)
        raise DataError(f"{where}: actions have shape {tuple(shape)}, expected (T, {action_dim})")
    if len(frames) != len(actions):
        raise DataError(f"{where}: {len(frames)} frames but {len(actions)} actions, expected one action per frame")
    if len(frames) == 0:
        raise DataError(f"{where}: episode is empty, expected at least one frame")
    if not np.isfinite(actions).all():
        bad = int(np.argwhere(~np.isfinite(actions))[0, 0])
        raise DataError(f"{where}: action at step {bad} is {actions[bad].tolist()}, expected finite values (no NaN or inf)")
    if success is not None and (success.ndim != 1 or len(success) != len(frames)):
        raise DataError(f"{where}: success has shape {tuple(success.shape)}, expected ({len(frames)},)")
    if state is not None:
        if not state_dim:
            raise DataError(f"{where}: a state was given but the dataset names no state dimensions (state_names)")
        if state.ndim != 2 or state.shape != (len(frames), state_dim):
            raise DataError(f"{where}: state has shape {tuple(state.shape)}, expected ({len(frames)}, {state_dim})")
        if not np.isfinite(state).all():
            bad = int(np.argwhere(~np.isfinite(state))[0, 0])
            raise DataError(f"{where}: state at step {bad} is not finite, expected finite values (no NaN or inf)")
    if reward is not None:
        if reward.shape != (len(frames),):
            raise DataError(f"{where}: reward has shape {tuple(reward.shape)}, expected ({len(frames)},)")
        if not np.isfinite(reward).all():
            bad = int(np.flatnonzero(~np.isfinite(reward))[0])
            raise DataError(f"{where}: reward at step {bad} is {reward[bad]}, expected a finite number")


def _validate_cameras(cameras: dict[str, np.ndarray], sizes: dict[str, tuple[int, int]], length: int, where: str) -> None:
    """Raise :class:`DataError` unless ``cameras`` holds exactly the declared cameras, each (T, H_c, W_c, 3) uint8."""
    missing = [name for name in sizes if name not in cameras]
    if missing:
        raise DataError(f"{where}: camera {missing[0]!r} was not given, expected every declared camera "
                        f"({', '.join(sizes)}) for every episode")
    undeclared = [name for name in cameras if name not in sizes]
    if undeclared:
        declared = ", ".join(sizes) or "none"
        raise DataError(f"{where}: camera {undeclared[0]!r} is not declared in the dataset's cameras "
                        f"(declared: {declared}), expected only declared cameras")
    for name, frames in cameras.items():
        h, w = sizes[name]
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            raise DataError(f"{where}: camera {name!r} frames have dtype {_dtype(frames)}, expected uint8")
        if frames.shape != (length, h, w, 3):
            raise DataError(f"{where}: camera {name!r} frames have shape {tuple(frames.shape)}, "
                            f"expected ({length}, {h}, {w}, 3)")


def holds_dataset(out: str | Path, info: DatasetInfo, *, num_episodes: int | None = None) -> bool:
    """True when ``out`` is a finished dataset described by ``info`` (with ``num_episodes``
    episodes, when given): what a re-run command may keep instead of writing it again."""
    meta_file = Path(out) / METADATA_FILE
    if not meta_file.is_file():
        return False
    try:
        meta = read_json(meta_file, "dataset metadata")
    except DataError:
        return False
    described = json.loads(json.dumps(info_to_json(info)))  # tuples as lists, as the file has them
    return (isinstance(meta, dict) and all(meta.get(k) == v for k, v in described.items())
            and (num_episodes is None or meta.get("num_episodes") == num_episodes))


def write_target(out: str | Path, *, overwrite: bool) -> Path:
    """The folder a command that writes the dataset ``out`` (and what lives in it, such as its
    branches) writes to: ``out``, or when ``overwrite`` replaces a finished dataset there, a hidden
    sibling ``.<name>.new`` that :func:`hma.io.replace_folder` swaps in once complete, so that a
    failure or a kill before that leaves the old dataset whole (a folder of datasets does not list it)."""
    out = Path(out)
    finish_replace(out)  # a swap killed between its renames is undone
    return out.with_name(f".{out.name}.new") if overwrite and (out / METADATA_FILE).exists() else out


class StoreWriter:
    """Writes one dataset folder, one episode at a time, resumably and atomically. With
    ``overwrite`` a finished dataset at ``out`` stays whole until :meth:`finalize` swaps the
    new one in (:func:`hma.io.replace_folder`).

    >>> with StoreWriter("data/reacher", info) as w:      # doctest: +SKIP
    ...     for e in range(w.num_staged, 100):
    ...         w.add_episode(frames, actions)
    """

    def __init__(self, out: str | Path, info: DatasetInfo, *, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.info = info
        self.partial = self.out.with_name(self.out.name + PARTIAL_SUFFIX)
        self.overwrite = overwrite
        check_cameras(info.camera, info.cameras, f"dataset {self.out}")
        if (self.out / METADATA_FILE).exists():
            if not overwrite:
                raise DataError(f"dataset {self.out} already exists, expected a new folder (overwrite=True replaces "
                                "it once the new dataset is complete)")
        elif self.out.is_file() or (self.out.is_dir() and any(self.out.iterdir())):
            raise DataError(f"{self.out} already exists and is not an hma dataset, expected a new or empty folder")
        self.staging = self.partial / STAGED_EPISODES_DIR
        self.staging.mkdir(parents=True, exist_ok=True)
        # The staged episodes only resume a run with the same description.
        info_file = self.partial / "info.json"
        described = info_to_json(info)
        if info_file.exists() and read_json(info_file, "staging info") != described:
            shutil.rmtree(self.staging)
            self.staging.mkdir(parents=True)
        atomic_write_json(info_file, described)

    @property
    def num_staged(self) -> int:
        """Episodes already written by this or an earlier (killed) writer: resume from here."""
        n = 0
        while (self.staging / f"{n:06d}.npz").exists():
            n += 1
        return n

    def add_episode(self, frames: np.ndarray, actions: np.ndarray, success: np.ndarray | None = None, *,
                    state: np.ndarray | None = None, reward: np.ndarray | None = None, task: str | None = None,
                    cameras: dict[str, np.ndarray] | None = None) -> int:
        """Stage one episode (optionally with its state, reward and task string, and the frames of
        every extra camera the dataset declares); returns its index."""
        index = self.num_staged
        actions = np.asarray(actions, dtype=np.float32) if isinstance(actions, np.ndarray) else actions
        state = None if state is None else np.asarray(state, dtype=np.float32)
        reward = None if reward is None else np.asarray(reward, dtype=np.float32)
        validate_episode(
            frames, actions, image_size=tuple(self.info.image_size), action_dim=self.info.action_dim,
            success=success, state=state, state_dim=len(self.info.state_names), reward=reward,
            where=f"{self.out} episode {index}",
        )
        cameras = cameras or {}
        _validate_cameras(cameras, self.info.cameras, len(frames), f"{self.out} episode {index}")
        arrays = {"frames": frames, "actions": actions}
        if success is not None:
            arrays["success"] = np.asarray(success, dtype=bool)
        if state is not None:
            arrays["state"] = state
        if reward is not None:
            arrays["reward"] = reward
        if task is not None:
            arrays["task"] = np.array(str(task))
        arrays.update({STAGED_CAMERA_PREFIX + name: array for name, array in cameras.items()})
        tmp = self.staging / f".{index:06d}.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.replace(self.staging / f"{index:06d}.npz")
        return index

    def finalize(self) -> "EpisodeStore":
        """Write the dataset folder from the staged episodes and return it opened."""
        n_eps = self.num_staged
        if n_eps == 0:
            raise DataError(f"{self.out}: no episodes were added, expected at least one")
        lengths, keys = [], []
        for e in range(n_eps):
            with np.load(self.staging / f"{e:06d}.npz") as z:
                lengths.append(len(z["actions"]))
                keys.append(set(z.files))
        # An optional array is kept only when every episode has it.
        has_success, has_state, has_reward = (all(k in ks for ks in keys) for k in ("success", "state", "reward"))
        tasks = [""] * n_eps if any("task" in ks for ks in keys) else None
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        n = int(starts[-1])
        a = self.info.action_dim
        self._write_frames(FRAMES_FILE, "frames", tuple(self.info.image_size), starts)
        for name, size in self.info.cameras.items():
            self._write_frames(camera_file(name), STAGED_CAMERA_PREFIX + name, tuple(size), starts)
        actions = np.empty((n, a), dtype=np.float32)
        success = np.zeros(n, dtype=bool) if has_success else None
        state = np.empty((n, len(self.info.state_names)), dtype=np.float32) if has_state else None
        reward = np.empty(n, dtype=np.float32) if has_reward else None
        for e in range(n_eps):
            with np.load(self.staging / f"{e:06d}.npz") as z:
                sl = slice(starts[e], starts[e + 1])
                actions[sl] = z["actions"]
                if success is not None:
                    success[sl] = z["success"]
                if state is not None:
                    state[sl] = z["state"]
                if reward is not None:
                    reward[sl] = z["reward"]
                if tasks is not None and "task" in z.files:
                    tasks[e] = str(z["task"])
        atomic_save_npy(self.partial / ACTIONS_FILE, actions)
        atomic_save_npy(self.partial / EPISODE_STARTS_FILE, starts)
        files = [FRAMES_FILE, ACTIONS_FILE, EPISODE_STARTS_FILE]
        for name, array in ((SUCCESS_FILE, success), (STATE_FILE, state), (REWARD_FILE, reward)):
            if array is not None:
                atomic_save_npy(self.partial / name, array)
                files.append(name)
        files.extend(camera_file(name) for name in self.info.cameras)
        meta = {
            "schema_version": SCHEMA_VERSION,
            **info_to_json(self.info),
            "action_dim": a,
            "num_episodes": n_eps,
            "num_frames": n,
            "has_success": success is not None,
            "has_state": state is not None,
            "has_reward": reward is not None,
            **({"episode_tasks": tasks} if tasks is not None else {}),
            "action_stats": action_statistics(actions),
            "files": {f: {"bytes": (self.partial / f).stat().st_size, "sha256": sha256_file(self.partial / f)} for f in files},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        shutil.rmtree(self.staging)
        (self.partial / "info.json").unlink()
        atomic_write_json(self.partial / METADATA_FILE, meta)  # last: marks the folder complete
        if self.overwrite:
            replace_folder(self.partial, self.out)  # the old dataset stays whole until the new one is
        else:
            self.partial.rename(self.out)
        return EpisodeStore(self.out)

    def _write_frames(self, name: str, key: str, size: tuple[int, int], starts: np.ndarray) -> None:
        """Copy every staged episode's ``key`` images into ``name``, an (N, H, W, 3) uint8 .npy
        written through a memmap so that a dataset larger than memory is never held whole."""
        path = self.partial / name
        path.parent.mkdir(exist_ok=True)
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(int(starts[-1]), *size, 3))
        for e in range(len(starts) - 1):
            with np.load(self.staging / f"{e:06d}.npz") as z:
                out[starts[e]:starts[e + 1]] = z[key]
        out.flush()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()


