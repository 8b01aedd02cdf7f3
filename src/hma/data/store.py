"""The native episode store: one folder per dataset, memory-mapped for fast reading.

Layout of a dataset folder::

    metadata.json        schema version, embodiment, counts, action statistics, checksums
    frames.npy           (N, H, W, 3) uint8, one row per control step
    actions.npy          (N, A) float32, the action taken after observing frames[i]
    episode_starts.npy   (E + 1,) int64, episode e spans rows [starts[e], starts[e + 1])
    success.npy          (N,) bool, only when the source reports success
    state.npy            (N, S) float32, the proprioceptive/simulator state at frames[i], when recorded
    reward.npy           (N,) float32, the reward of the action at row i, when recorded

``metadata.json`` also names the state's dimensions (``state_names``) and, when the
source has them, each episode's task string (``episode_tasks``).

One row per control step follows LeRobot's convention (a frame and the action taken at
it), so import/export are one-to-one. Training windows resample to a common frame rate
later (:mod:`hma.data.windows`), turning the k control steps inside one frame into one
action chunk, as the paper does for robots with different control frequencies.

Writing is resumable and atomic: :class:`StoreWriter` stages every finished episode as
its own file under ``<out>.partial/episodes/`` and, on :meth:`StoreWriter.finalize`,
writes the arrays, then ``metadata.json`` last, then renames the staging folder to
``<out>``. A killed writer leaves only a ``.partial`` folder, which the reader refuses
and the next writer resumes from.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from hma.errors import DataError
from hma.io import atomic_save_npy, atomic_write_json, read_json, sha256_file

SCHEMA_VERSION = 1
METADATA_FILE = "metadata.json"
FRAMES_FILE = "frames.npy"
ACTIONS_FILE = "actions.npy"
EPISODE_STARTS_FILE = "episode_starts.npy"
SUCCESS_FILE = "success.npy"
STATE_FILE = "state.npy"
REWARD_FILE = "reward.npy"
PARTIAL_SUFFIX = ".partial"
_STAGED_EPISODES = "episodes"


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

    @property
    def action_dim(self) -> int:
        return len(self.action_names)


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
        self.staging = self.partial / _STAGED_EPISODES
        self.staging.mkdir(parents=True, exist_ok=True)
        # The staged episodes only resume a run with the same description.
        info_file = self.partial / "info.json"
        described = _info_to_json(info)
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
            **_info_to_json(self.info),
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


def _info_to_json(info: DatasetInfo) -> dict[str, Any]:
    return {
        "embodiment": info.embodiment,
        "simulator": info.simulator,
        "task": info.task,
        "action_names": list(info.action_names),
        "control_hz": float(info.control_hz),
        "image_size": [int(info.image_size[0]), int(info.image_size[1])],
        "state_names": list(info.state_names),
        "extra": info.extra,
    }


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_metadata_types(meta: dict[str, Any], path: Path) -> None:
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
    if not isinstance(size, list) or len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
        raise bad("image_size", "[height, width] of positive integers")
    for key in ("num_episodes", "num_frames"):
        if not _is_int(meta[key]) or meta[key] < 1:
            raise bad(key, "a positive integer")
    stats = meta["action_stats"]
    if not isinstance(stats, dict) or any(
        not isinstance(stats.get(k), list) or len(stats[k]) != len(names)
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in stats[k])
        for k in ("mean", "std", "min", "max")
    ):
        raise bad("action_stats", f"mean/std/min/max lists of {len(names)} numbers")
    files = meta["files"]
    if not isinstance(files, dict) or not all(
        isinstance(spec, dict) and _is_int(spec.get("bytes")) and isinstance(spec.get("sha256"), str)
        for spec in files.values()
    ):
        raise bad("files", "a mapping of file name to {bytes, sha256}")
    if any(not isinstance(n, str) or "/" in n or n.startswith(".") for n in files):
        raise bad("files", "plain file names inside the dataset folder")
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
        _check_metadata_types(meta, meta_path)
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
        for name in (FRAMES_FILE, ACTIONS_FILE, EPISODE_STARTS_FILE):
            if name not in files:
                raise DataError(f"{meta_path} lists no {name}")
        self.frames: np.ndarray = self._load(FRAMES_FILE)  # (N, H, W, 3) uint8, memmap
        self.actions: np.ndarray = self._load(ACTIONS_FILE)  # (N, A) float32
        self.episode_starts: np.ndarray = np.asarray(self._load(EPISODE_STARTS_FILE))  # (E + 1,)
        self.success: np.ndarray | None = self._load(SUCCESS_FILE) if SUCCESS_FILE in files else None
        self.state: np.ndarray | None = self._load(STATE_FILE) if STATE_FILE in files else None  # (N, S)
        self.reward: np.ndarray | None = self._load(REWARD_FILE) if REWARD_FILE in files else None  # (N,)
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

    # -- description -------------------------------------------------------------------
    @property
    def embodiment(self) -> str:
        return self.meta["embodiment"]

    @property
    def simulator(self) -> str:
        return self.meta["simulator"]

    @property
    def action_names(self) -> list[str]:
        return list(self.meta["action_names"])

    @property
    def action_dim(self) -> int:
        return len(self.meta["action_names"])

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
            state_names=self.state_names,
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

    def episode(self, e: int) -> dict[str, np.ndarray]:
        """Frames, actions (and success, state, reward where recorded) of one episode, as memmap views."""
        sl = self.episode_slice(e)
        out = {"frames": self.frames[sl], "actions": self.actions[sl]}
        for key, array in (("success", self.success), ("state", self.state), ("reward", self.reward)):
            if array is not None:
                out[key] = array[sl]
        return out

    def episodes(self) -> Iterator[dict[str, np.ndarray]]:
        for e in range(self.num_episodes):
            yield self.episode(e)

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.root)!r}, embodiment={self.embodiment!r}, episodes={self.num_episodes}, frames={self.num_frames})"


def find_datasets(paths: Sequence[str | Path]) -> list[Path]:
    """Expand each path to dataset folders: a dataset itself, or a folder of datasets."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / METADATA_FILE).exists():
            found.append(p)
        elif p.is_dir():
            subs = sorted(d for d in p.iterdir() if (d / METADATA_FILE).exists())
            if not subs:
                raise DataError(f"{p} holds no hma dataset (no {METADATA_FILE} in it or its sub-folders)")
            found.extend(subs)
        else:
            raise DataError(f"dataset path {p} does not exist")
    return found


def open_datasets(paths: Sequence[str | Path], *, verify: bool = False) -> list[EpisodeStore]:
    """Open every dataset under ``paths`` (see :func:`find_datasets`)."""
    return [EpisodeStore(p, verify=verify) for p in find_datasets(paths)]
