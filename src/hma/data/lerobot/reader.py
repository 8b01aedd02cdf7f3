"""Reading LeRobotDataset folders (v2.1 and v3.0) episode by episode.

:class:`LeRobotSource` checks the metadata up front (info.json, the episode index) and
then reads one episode at a time: its parquet rows (actions, success flags, embedded
images) and its camera frames, fetched by time from the mp4 as LeRobot does. Every
problem becomes one :class:`DataError` naming the file; pyarrow and PyAV exceptions never
escape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hma.data.lerobot.format import (
    ACTION_KEY,
    EPISODES_DIR,
    EPISODES_JSONL_PATH,
    INFO_PATH,
    REWARD_KEY,
    STATE_KEY,
    SUCCESS_KEY,
    Info,
    Layout,
    action_names,
    vector_names,
    fill_template,
    guard,
    parse_info,
)
from hma.data.lerobot.columns import check_action_column, check_columns, check_image_column, bool_column
from hma.data.lerobot.video import VideoReader, decode_image, resize
from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter
from hma.errors import ConfigError, DataError
from hma.io import is_int, read_json


@dataclass(frozen=True)
class EpisodeRef:
    """Where one episode's rows and frames are."""

    index: int
    length: int
    data_file: Path
    video_file: Path | None  # None when the camera is an image feature stored in the parquet
    from_timestamp: float  # seconds into video_file where frame 0 is presented
    to_timestamp: float  # end of the episode in video_file (inf: the file holds only this episode)
    tasks: tuple[str, ...]


@dataclass
class Episode:
    frames: np.ndarray  # (T, H, W, 3) uint8
    actions: np.ndarray  # (T, A) float32
    success: np.ndarray | None  # (T,) bool
    state: np.ndarray | None = None  # (T, S) float32, observation.state
    reward: np.ndarray | None = None  # (T,) float32, next.reward


# Camera names that see the scene, in order of preference; wrist and hand cameras come last.
SCENE_CAMERAS = ("front", "top", "agentview", "main", "scene", "image", "cam_high")
HAND_CAMERAS = ("wrist", "hand", "gripper", "eye_in_hand")


def default_camera(cameras: list[str]) -> str:
    """The camera an import takes without ``--camera``: the first whose last name part names a
    scene view (front, top, agentview, ...), else the first that is not a wrist/hand camera,
    else the first listed."""
    def last(key: str) -> str:
        return key.rsplit(".", 1)[-1].lower()

    for wanted in SCENE_CAMERAS:
        for key in cameras:
            if last(key).startswith(wanted):
                return key
    return next((k for k in cameras if not any(h in last(k) for h in HAND_CAMERAS)), cameras[0])


class LeRobotSource:
    """A LeRobotDataset folder opened for reading one camera."""

    def __init__(self, root: str | Path, *, camera: str | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"LeRobot dataset folder {self.root} does not exist")
        info_path = self.root / INFO_PATH
        self.info: Info = parse_info(read_json(info_path, "LeRobot info file"), info_path)
        cameras = self.info.cameras
        if not cameras:
            raise DataError(f"{info_path} lists no video or image feature, expected at least one camera")
        if camera is not None and camera not in cameras:
            raise DataError(f"camera {camera!r} is not a feature of {self.root}, expected one of {', '.join(cameras)}")
        self.camera: str = camera or default_camera(cameras)
        self.camera_is_video = self.info.features[self.camera].dtype == "video"
        if self.camera_is_video and self.info.video_path is None:
            raise DataError(f"{info_path}: video_path is null but {self.camera!r} is a video feature, expected a path template")
        action = self.info.features.get(ACTION_KEY)
        if action is None:
            raise DataError(f"{info_path} has no {ACTION_KEY!r} feature, expected the actions to import")
        if len(action.shape) != 1 or not action.dtype.startswith("float"):
            raise DataError(f"{info_path}: feature 'action' is {action.dtype}{list(action.shape)}, expected a float vector of shape [A]")
        self.action_dim: int = action.shape[0]
        self.action_names: list[str] = action_names(action, info_path)
        state = self.info.features.get(STATE_KEY)
        self.state_names: list[str] = vector_names(state, info_path, prefix="s") if state is not None else []
        self.episodes: list[EpisodeRef] = self._episodes_v2() if self.info.layout is Layout.V2 else self._episodes_v3()
        if len(self.episodes) != self.info.total_episodes:
            raise DataError(f"{info_path}: total_episodes is {self.info.total_episodes} but the episode index lists {len(self.episodes)}")
        self._table: tuple[Path, pa.Table] | None = None
        self._video: VideoReader | None = None

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def tasks(self) -> list[str]:
        """Distinct tasks in episode order."""
        return list(dict.fromkeys(t for ep in self.episodes for t in ep.tasks))

    # -- the episode index -------------------------------------------------------------
    def _episodes_v2(self) -> list[EpisodeRef]:
        path = self.root / EPISODES_JSONL_PATH
        if not path.is_file():
            raise DataError(f"episode index {path} does not exist")
        with guard(path, "the episode index"):
            lines = path.read_text().splitlines()
        records = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {n} is not valid JSON ({e.msg})") from None
        info = self.info
        refs = []
        for n, rec in enumerate(records, 1):
            if not isinstance(rec, dict):
                raise DataError(f"{path} line {n} holds {rec!r}, expected an object with episode_index and length")
            index, length = rec.get("episode_index"), rec.get("length")
            if not is_int(index) or index < 0 or not is_int(length) or length <= 0:
                raise DataError(f"{path} line {n} has episode_index {index!r} and length {length!r}, expected integers >= 0 and > 0")
            chunk = index // info.chunks_size
            data = fill_template(info.data_path, info.path, episode_chunk=chunk, episode_index=index)
            video = None
            if self.camera_is_video:
                video = fill_template(info.video_path, info.path, episode_chunk=chunk, episode_index=index, video_key=self.camera)
            refs.append(EpisodeRef(
                index=index, length=length, data_file=self.root / data,
                video_file=self.root / video if self.camera_is_video else None,
                from_timestamp=0.0, to_timestamp=float("inf"), tasks=_tasks(rec.get("tasks"), path, n),
            ))
        return _sorted_unique(refs, path)

    def _episodes_v3(self) -> list[EpisodeRef]:
        folder = self.root / EPISODES_DIR
        files = sorted(folder.glob("chunk-*/file-*.parquet"))
        if not files:
            raise DataError(f"{folder} holds no chunk-*/file-*.parquet episode index, expected a v3.0 dataset")
        ints = ["episode_index", "length", "data/chunk_index", "data/file_index"]
        floats: list[str] = []
        if self.camera_is_video:
            ints += [f"videos/{self.camera}/chunk_index", f"videos/{self.camera}/file_index"]
            floats = [f"videos/{self.camera}/from_timestamp", f"videos/{self.camera}/to_timestamp"]
        info = self.info
        refs = []
        for path in files:
            with guard(path, "the episode index parquet"):
                schema = pq.read_schema(path)
                check_columns(schema, path, ints=ints, floats=floats)
                columns = ints + floats + (["tasks"] if "tasks" in schema.names else [])
                table = pq.read_table(path, columns=columns)
            cols = {c: table.column(c).to_pylist() for c in columns}
            for c in ints + floats:
                if None in cols[c]:
                    raise DataError(f"{path}: column {c!r} has null values, expected one value per episode")
            for r in range(table.num_rows):
                index, length = cols["episode_index"][r], cols["length"][r]
                if index < 0 or length <= 0:
                    raise DataError(f"{path} row {r} has episode_index {index} and length {length}, expected >= 0 and > 0")
                data = fill_template(info.data_path, info.path, chunk_index=cols["data/chunk_index"][r], file_index=cols["data/file_index"][r])
                video, start, end = None, 0.0, float("inf")
                if self.camera_is_video:
                    key = f"videos/{self.camera}"
                    video = fill_template(info.video_path, info.path, video_key=self.camera,
                                          chunk_index=cols[f"{key}/chunk_index"][r], file_index=cols[f"{key}/file_index"][r])
                    start, end = float(cols[f"{key}/from_timestamp"][r]), float(cols[f"{key}/to_timestamp"][r])
                    if not (np.isfinite(start) and np.isfinite(end) and 0 <= start < end):
                        raise DataError(f"{path} row {r}: episode {index} spans {start} s to {end} s of its video, expected 0 <= from < to")
                refs.append(EpisodeRef(
                    index=index, length=length, data_file=self.root / data,
                    video_file=self.root / video if self.camera_is_video else None, from_timestamp=start, to_timestamp=end,
                    tasks=_tasks(cols["tasks"][r] if "tasks" in cols else None, path, r),
                ))
        return _sorted_unique(refs, folder)

    # -- one episode -------------------------------------------------------------------
    def read_episode(self, ref: EpisodeRef, *, image_size: int | None = None) -> Episode:
        """Frames (optionally resized to a square), actions and success flags of one episode."""
        what = f"episode {ref.index}"
        rows = self._episode_rows(ref)
        actions = self._actions(rows, ref)
        success = bool_column(rows.column(SUCCESS_KEY), ref.data_file, what) if SUCCESS_KEY in rows.column_names else None
        state = self._floats(rows, STATE_KEY, ref, len(self.state_names)) if self.state_names else None
        reward = self._floats(rows, REWARD_KEY, ref, 1)[:, 0] if REWARD_KEY in rows.column_names else None
        if ref.video_file is not None:
            video = self._video_reader(ref.video_file)
            frames = video.episode_frames(start=ref.from_timestamp, count=ref.length, fps=self.fps,
                                          end=ref.to_timestamp, size=image_size, what=what)
        else:
            frames = self._images(rows, ref, image_size)
        return Episode(frames=frames, actions=actions, success=success, state=state, reward=reward)

    def _episode_rows(self, ref: EpisodeRef) -> pa.Table:
        table = self._data_table(ref.data_file)
        with guard(ref.data_file, f"the rows of episode {ref.index}"):
            episode_col = table.column("episode_index").to_numpy()
            rows = table.take(np.flatnonzero(episode_col == ref.index))
            frame_index = rows.column("frame_index").to_numpy()
        if len(frame_index) != ref.length:
            raise DataError(f"{ref.data_file}: episode {ref.index} has {len(frame_index)} rows, expected its length {ref.length} from the episode index")
        order = np.argsort(frame_index, kind="stable")
        if not np.array_equal(frame_index[order], np.arange(ref.length)):
            raise DataError(f"{ref.data_file}: episode {ref.index} has frame_index values that are not 0..{ref.length - 1}")
        return rows.take(order)

    def _data_table(self, path: Path) -> pa.Table:
        """The needed columns of one data parquet; the last one stays cached (v3.0 files hold many episodes)."""
        if self._table is not None and self._table[0] == path:
            return self._table[1]
        if not path.is_file():
            raise DataError(f"data file {path} does not exist")
        with guard(path, "the data parquet"):
            schema = pq.read_schema(path)
            check_columns(schema, path, ints=["episode_index", "frame_index"], floats=[])
            check_action_column(schema, path, self.action_dim)
            columns = ["episode_index", "frame_index", ACTION_KEY]
            if SUCCESS_KEY in schema.names:
                columns.append(SUCCESS_KEY)
            if self.state_names:
                if STATE_KEY not in schema.names:
                    raise DataError(f"{path} lacks the column {STATE_KEY!r} that meta/info.json declares")
                columns.append(STATE_KEY)
            if REWARD_KEY in schema.names:
                columns.append(REWARD_KEY)
            if not self.camera_is_video:
                check_image_column(schema, path, self.camera)
                columns.append(self.camera)
            table = pq.read_table(path, columns=columns)
            for c in ("episode_index", "frame_index"):
                if table.column(c).null_count:
                    raise DataError(f"{path}: column {c!r} has null values, expected one integer per row")
        self._table = (path, table)
        return table

    def _actions(self, rows: pa.Table, ref: EpisodeRef) -> np.ndarray:
        column = rows.column(ACTION_KEY).combine_chunks()
        with guard(ref.data_file, f"the actions of episode {ref.index}"):
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            values = column.flatten()
            if column.null_count or values.null_count or not np.array_equal(lengths, np.full(ref.length, self.action_dim)):
                raise DataError(f"{ref.data_file}: episode {ref.index} has missing or ragged actions, expected {self.action_dim} floats per row")
            actions = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return actions.reshape(ref.length, self.action_dim)  # (T, A)

    def _floats(self, rows: pa.Table, key: str, ref: EpisodeRef, dim: int) -> np.ndarray:
        """A float column (scalars or fixed lists of ``dim``) of one episode as (T, dim) float32."""
        column = rows.column(key).combine_chunks()
        with guard(ref.data_file, f"{key} of episode {ref.index}"):
            if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type) or pa.types.is_large_list(column.type):
                lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
                values = column.flatten()
                ragged = not np.array_equal(lengths, np.full(ref.length, dim))
            else:
                values, ragged = column, dim != 1
            if column.null_count or values.null_count or ragged:
                raise DataError(f"{ref.data_file}: episode {ref.index} has missing or ragged {key!r} values, "
                                f"expected {dim} per row")
            out = values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(ref.length, dim)
        if not np.isfinite(out).all():
            raise DataError(f"{ref.data_file}: episode {ref.index} has non-finite {key!r} values, expected finite numbers")
        return out

    def _images(self, rows: pa.Table, ref: EpisodeRef, size: int | None) -> np.ndarray:
        blobs = rows.column(self.camera).combine_chunks().field("bytes").to_pylist()
        frames = []
        for k, blob in enumerate(blobs):
            where = f"{ref.data_file} episode {ref.index} frame {k} ({self.camera})"
            if blob is None:
                raise DataError(f"{where} has no embedded image bytes, expected PNG bytes in the parquet")
            frames.append(resize(decode_image(blob, where), size))
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise DataError(f"{ref.data_file}: images of episode {ref.index} change size ({sorted(shapes)}), expected one size")
        return np.stack(frames)  # (T, H, W, 3)

    def _video_reader(self, path: Path) -> VideoReader:
        if self._video is None or self._video.path != path:
            self.close()
            self._video = VideoReader(path)
        return self._video

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None

    def __enter__(self) -> "LeRobotSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _tasks(value: Any, path: Path, where: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise DataError(f"{path} entry {where}: tasks is {value!r}, expected a list of strings")
    return tuple(value)


def _sorted_unique(refs: list[EpisodeRef], path: Path) -> list[EpisodeRef]:
    refs = sorted(refs, key=lambda r: r.index)
    for a, b in zip(refs, refs[1:]):
        if a.index == b.index:
            raise DataError(f"{path} lists episode {a.index} twice, expected each episode once")
    return refs


def import_lerobot(
    src: str | Path,
    out: str | Path,
    *,
    camera: str | None = None,
    embodiment: str | None = None,
    image_size: int | None = None,
) -> EpisodeStore:
    """Convert a LeRobotDataset folder (v2.1 or v3.0) into a native episode store at ``out``.

    ``camera`` picks the video/image feature (default: the first one listed);
    ``embodiment`` defaults to the dataset's robot_type, else the folder name;
    ``image_size`` resizes frames to a square. An interrupted import resumes. ``src`` may be
    the Hub name (``org/name``) of a dataset repo (:mod:`hma.hub`; a local path wins).
    """
    from hma.hub import resolve

    if image_size is not None and (not is_int(image_size) or image_size <= 0):
        raise ConfigError(f"image_size is {image_size!r}, expected a positive number of pixels")
    src = resolve(src, repo_type="dataset", what="LeRobot dataset")
    with LeRobotSource(src, camera=camera) as source:
        # The first episode fixes the frame size the store is declared with.
        first = source.read_episode(source.episodes[0], image_size=image_size)
        height, width = first.frames.shape[1:3]
        info = DatasetInfo(
            embodiment=embodiment or source.info.robot_type or src.resolve().name,
            simulator="lerobot",
            action_names=source.action_names,
            control_hz=source.fps,
            image_size=(height, width),
            task=source.tasks[0] if len(source.tasks) == 1 else "",
            state_names=source.state_names,
            extra={"lerobot": {
                "source": str(src.resolve()), "codebase_version": source.info.version, "camera": source.camera,
                "cameras": list(source.info.cameras),
                "robot_type": source.info.robot_type, "tasks": source.tasks,
            }},
        )
        writer = StoreWriter(out, info)
        from hma.progress import bar

        for i in bar(range(writer.num_staged, len(source.episodes)), desc="import-lerobot", unit="ep", leave=False):
            ref = source.episodes[i]
            episode = first if i == 0 else source.read_episode(ref, image_size=image_size)
            if episode.frames.shape[1:3] != (height, width):
                raise DataError(
                    f"{ref.video_file or ref.data_file}: episode {ref.index} has {episode.frames.shape[2]}x{episode.frames.shape[1]} "
                    f"frames, expected {width}x{height} like episode {source.episodes[0].index} (pass --image-size to resize)"
                )
            writer.add_episode(episode.frames, episode.actions, episode.success, state=episode.state,
                               reward=episode.reward, task=ref.tasks[0] if ref.tasks else None)
        return writer.finalize()
