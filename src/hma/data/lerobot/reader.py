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
from hma.errors import DataError
from hma.io import is_int, read_json


@dataclass(frozen=True)
class VideoSpan:
    """Where one episode of one camera is in an mp4."""

    file: Path
    from_timestamp: float  # seconds into the file where frame 0 is presented
    to_timestamp: float  # end of the episode in the file (inf: the file holds only this episode)


@dataclass(frozen=True)
class EpisodeRef:
    """Where one episode's rows and frames are."""

    index: int
    length: int
    data_file: Path
    videos: dict[str, VideoSpan]  # per video camera; image cameras are stored in the parquet rows
    tasks: tuple[str, ...]


@dataclass
class Episode:
    frames: np.ndarray  # (T, H, W, 3) uint8, the primary camera
    actions: np.ndarray  # (T, A) float32
    success: np.ndarray | None  # (T,) bool
    state: np.ndarray | None = None  # (T, S) float32, observation.state
    reward: np.ndarray | None = None  # (T,) float32, next.reward
    cameras: dict[str, np.ndarray] | None = None  # the other cameras read, name -> (T, H', W', 3) uint8


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
    """A LeRobotDataset folder opened for reading: its primary camera (``camera``, default
    :func:`default_camera`) and, with ``all_cameras``, every other camera too."""

    def __init__(self, root: str | Path, *, camera: str | None = None, all_cameras: bool = False) -> None:
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
        # The cameras read, the primary first.
        self.cameras: list[str] = [self.camera, *(c for c in cameras if c != self.camera and all_cameras)]
        self.video_cameras = [c for c in self.cameras if self.info.features[c].dtype == "video"]
        if self.video_cameras and self.info.video_path is None:
            raise DataError(f"{info_path}: video_path is null but {self.video_cameras[0]!r} is a video feature, expected a path template")
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
        self._videos: dict[str, VideoReader] = {}  # the open file of each video camera

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
            videos = {c: VideoSpan(self.root / fill_template(info.video_path, info.path, episode_chunk=chunk,
                                                             episode_index=index, video_key=c), 0.0, float("inf"))
                      for c in self.video_cameras}
            refs.append(EpisodeRef(index=index, length=length, data_file=self.root / data, videos=videos,
                                   tasks=_tasks(rec.get("tasks"), path, n)))
        return _sorted_unique(refs, path)

    def _episodes_v3(self) -> list[EpisodeRef]:
        folder = self.root / EPISODES_DIR
        files = sorted(folder.glob("chunk-*/file-*.parquet"))
        if not files:
            raise DataError(f"{folder} holds no chunk-*/file-*.parquet episode index, expected a v3.0 dataset")
        ints = ["episode_index", "length", "data/chunk_index", "data/file_index"]
        floats: list[str] = []
        for c in self.video_cameras:
            ints += [f"videos/{c}/chunk_index", f"videos/{c}/file_index"]
            floats += [f"videos/{c}/from_timestamp", f"videos/{c}/to_timestamp"]
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
                videos = {}
                for c in self.video_cameras:
                    key = f"videos/{c}"
                    video = fill_template(info.video_path, info.path, video_key=c,
                                          chunk_index=cols[f"{key}/chunk_index"][r], file_index=cols[f"{key}/file_index"][r])
                    start, end = float(cols[f"{key}/from_timestamp"][r]), float(cols[f"{key}/to_timestamp"][r])
                    if not (np.isfinite(start) and np.isfinite(end) and 0 <= start < end):
                        raise DataError(f"{path} row {r}: episode {index} spans {start} s to {end} s of its {c} video, expected 0 <= from < to")
                    videos[c] = VideoSpan(self.root / video, start, end)
                refs.append(EpisodeRef(index=index, length=length, data_file=self.root / data, videos=videos,
                                       tasks=_tasks(cols["tasks"][r] if "tasks" in cols else None, path, r)))
        return _sorted_unique(refs, folder)

    # -- one episode -------------------------------------------------------------------
    def read_episode(self, ref: EpisodeRef, *, image_size: int | None = None) -> Episode:
        """Frames of every camera read (optionally resized to a square), actions, success flags,
        state and reward of one episode."""
        what = f"episode {ref.index}"
        rows = self._episode_rows(ref)
        actions = self._actions(rows, ref)
        success = bool_column(rows.column(SUCCESS_KEY), ref.data_file, what) if SUCCESS_KEY in rows.column_names else None
        state = self._floats(rows, STATE_KEY, ref, len(self.state_names)) if self.state_names else None
        reward = self._floats(rows, REWARD_KEY, ref, 1)[:, 0] if REWARD_KEY in rows.column_names else None
        frames = {}
        for camera in self.cameras:
            span = ref.videos.get(camera)
            if span is not None:
                frames[camera] = self._video_reader(camera, span.file).episode_frames(
                    start=span.from_timestamp, count=ref.length, fps=self.fps, end=span.to_timestamp, size=image_size,
                    what=what)  # the file's path names the camera
            else:
                frames[camera] = self._images(rows, ref, image_size, camera)
        primary = frames.pop(self.camera)
        return Episode(frames=primary, actions=actions, success=success, state=state, reward=reward,
                       cameras=frames or None)

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
            for camera in self.cameras:
                if camera not in self.video_cameras:
                    check_image_column(schema, path, camera)
                    columns.append(camera)
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

    def _images(self, rows: pa.Table, ref: EpisodeRef, size: int | None, camera: str) -> np.ndarray:
        blobs = rows.column(camera).combine_chunks().field("bytes").to_pylist()
        frames = []
        for k, blob in enumerate(blobs):
            where = f"{ref.data_file} episode {ref.index} frame {k} ({camera})"
            if blob is None:
                raise DataError(f"{where} has no embedded image bytes, expected PNG bytes in the parquet")
            frames.append(resize(decode_image(blob, where), size))
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise DataError(f"{ref.data_file}: images of episode {ref.index} change size ({sorted(shapes)}), expected one size")
        return np.stack(frames)  # (T, H, W, 3)

    def _video_reader(self, camera: str, path: Path) -> VideoReader:
        reader = self._videos.get(camera)
        if reader is None or reader.path != path:
            if reader is not None:
                reader.close()
            reader = self._videos[camera] = VideoReader(path)
        return reader

    def close(self) -> None:
        for reader in self._videos.values():
            reader.close()
        self._videos.clear()

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
