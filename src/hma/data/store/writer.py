"""Writing a dataset: episodes staged one file each under ``<out>.partial/``, then the arrays,
then ``metadata.json``, then one rename (see :mod:`hma.data.store`)."""

from __future__ import annotations

import datetime as _dt
import shutil
from pathlib import Path

import numpy as np

from hma.data.store.layout import (ACTIONS_FILE, EPISODE_STARTS_FILE, FRAMES_FILE, METADATA_FILE, PARTIAL_SUFFIX,
                                   REWARD_FILE, SCHEMA_VERSION, STAGED_EPISODES_DIR, STATE_FILE, SUCCESS_FILE,
                                   DatasetInfo, action_statistics, info_to_json)
from hma.data.store.reader import EpisodeStore
from hma.errors import DataError
from hma.io import atomic_save_npy, atomic_write_json, read_json, sha256_file

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
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise DataError(f"{where}: frames have dtype {dtype}, expected uint8")
    if frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
        raise DataError(f"{where}: frames have shape {tuple(frames.shape)}, expected (T, {h}, {w}, 3)")
    if not isinstance(actions, np.ndarray) or actions.ndim != 2 or actions.shape[1] != action_dim:
        shape = tuple(getattr(actions, "shape", ()))
        raise DataError(f"{where}: actions have shape {shape}, expected (T, {action_dim})")
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


class StoreWriter:
    """Writes one dataset folder, one episode at a time, resumably and atomically.

    >>> with StoreWriter("data/reacher", info) as w:      # doctest: +SKIP
    ...     for e in range(w.num_staged, 100):
    ...         w.add_episode(frames, actions)
    """

    def __init__(self, out: str | Path, info: DatasetInfo, *, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.info = info
        self.partial = self.out.with_name(self.out.name + PARTIAL_SUFFIX)
        if (self.out / METADATA_FILE).exists():
            if not overwrite:
                raise DataError(f"dataset {self.out} already exists; pass overwrite=True (--overwrite) to replace it")
            shutil.rmtree(self.out)
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
                    state: np.ndarray | None = None, reward: np.ndarray | None = None, task: str | None = None) -> int:
        """Stage one episode (optionally with its state, reward and task string); returns its index."""
        index = self.num_staged
        actions = np.asarray(actions, dtype=np.float32) if isinstance(actions, np.ndarray) else actions
        state = None if state is None else np.asarray(state, dtype=np.float32)
        reward = None if reward is None else np.asarray(reward, dtype=np.float32)
        validate_episode(
            frames, actions, image_size=tuple(self.info.image_size), action_dim=self.info.action_dim,
            success=success, state=state, state_dim=len(self.info.state_names), reward=reward,
            where=f"{self.out} episode {index}",
        )
        arrays = {"frames": frames, "actions": actions}
        if success is not None:
            arrays["success"] = np.asarray(success, dtype=bool)
        if state is not None:
            arrays["state"] = state
        if reward is not None:
            arrays["reward"] = reward
        if task is not None:
            arrays["task"] = np.array(str(task))
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
        h, w = self.info.image_size
        a = self.info.action_dim
        frames_mm = np.lib.format.open_memmap(self.partial / FRAMES_FILE, mode="w+", dtype=np.uint8, shape=(n, h, w, 3))
        actions = np.empty((n, a), dtype=np.float32)
        success = np.zeros(n, dtype=bool) if has_success else None
        state = np.empty((n, len(self.info.state_names)), dtype=np.float32) if has_state else None
        reward = np.empty(n, dtype=np.float32) if has_reward else None
        for e in range(n_eps):
            with np.load(self.staging / f"{e:06d}.npz") as z:
                sl = slice(starts[e], starts[e + 1])
                frames_mm[sl] = z["frames"]
                actions[sl] = z["actions"]
                if success is not None:
                    success[sl] = z["success"]
                if state is not None:
                    state[sl] = z["state"]
                if reward is not None:
                    reward[sl] = z["reward"]
                if tasks is not None and "task" in z.files:
                    tasks[e] = str(z["task"])
        frames_mm.flush()
        del frames_mm
        atomic_save_npy(self.partial / ACTIONS_FILE, actions)
        atomic_save_npy(self.partial / EPISODE_STARTS_FILE, starts)
        files = [FRAMES_FILE, ACTIONS_FILE, EPISODE_STARTS_FILE]
        for name, array in ((SUCCESS_FILE, success), (STATE_FILE, state), (REWARD_FILE, reward)):
            if array is not None:
                atomic_save_npy(self.partial / name, array)
                files.append(name)
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
        self.partial.rename(self.out)
        return EpisodeStore(self.out)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()


