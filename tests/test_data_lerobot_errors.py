"""Malformed LeRobot folders: each problem is one DataError naming the file, never a traceback."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _helpers_lerobot import CAMERA, SECOND_CAMERA, encode_mp4, episode_frames, write_v21, write_v30
from hma.data.lerobot import import_lerobot
from hma.errors import DataError

V21_DATA = "data/chunk-000/episode_000001.parquet"
V21_VIDEO = f"videos/chunk-000/{CAMERA}/episode_000001.mp4"
V30_DATA = "data/chunk-000/file-000.parquet"
V30_VIDEO = f"videos/{CAMERA}/chunk-000/file-000.mp4"
V30_EPISODES = "meta/episodes/chunk-000/file-000.parquet"


def _edit_info(root: Path, edit) -> None:
    path = root / "meta/info.json"
    info = json.loads(path.read_text())
    edit(info)
    path.write_text(json.dumps(info))


def _edit_table(path: Path, edit) -> None:
    pq.write_table(edit(pq.read_table(path)), path)


def _replace(table: pa.Table, name: str, array: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, array)


def _import_error(root: Path, tmp_path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        import_lerobot(root, tmp_path / "native", **kwargs)
    return str(info.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda i: i.pop("fps"), r"info.json lacks the key\(s\) fps"),
        (lambda i: i.update(fps="ten"), r"info.json: fps is 'ten'"),
        (lambda i: i.update(codebase_version="v9.9"), r"info.json: unknown codebase_version 'v9.9', expected one of v2.0, v2.1, v3.0"),
        (lambda i: i.update(total_episodes=-1), r"info.json: total_episodes is -1"),
        (lambda i: i.update(features=[]), r"info.json: features is list"),
        (lambda i: i["features"]["action"].update(shape="3"), r"info.json: feature 'action' has shape '3'"),
        (lambda i: i["features"]["action"].update(names=["x"]), r"features.action.names is \['x'\], expected 3 strings"),
        (lambda i: i["features"].pop("action"), r"info.json has no 'action' feature"),
        (lambda i: [i["features"].pop(k) for k in (CAMERA, SECOND_CAMERA)], r"lists no video or image feature"),
        (lambda i: i.update(data_path="data/{chunk[0]}.parquet"), r"path template 'data/\{chunk\[0\]\}.parquet' cannot be filled"),
        (lambda i: i.update(total_episodes=7), r"total_episodes is 7 but the episode index lists 3"),
    ],
)
def test_malformed_info_json(tmp_path, edit, message):
    write_v21(tmp_path / "src")
    _edit_info(tmp_path / "src", edit)
    text = _import_error(tmp_path / "src", tmp_path)
    assert str(tmp_path / "src/meta/info.json") in text
    assert re.search(message, text), text


def test_missing_or_invalid_info_json(tmp_path):
    assert "does not exist" in _import_error(tmp_path / "nowhere", tmp_path)
    write_v30(tmp_path / "src")
    (tmp_path / "src/meta/info.json").write_text("{not json")
    assert "info.json is not valid JSON" in _import_error(tmp_path / "src", tmp_path)
    (tmp_path / "src/meta/info.json").unlink()
    assert "info.json does not exist" in _import_error(tmp_path / "src", tmp_path)


@pytest.mark.parametrize(("writer", "data"), [(write_v21, V21_DATA), (write_v30, V30_DATA)], ids=["v2.1", "v3.0"])
def test_data_parquet_missing_or_mistyped_columns(tmp_path, writer, data):
    writer(tmp_path / "src")
    path = tmp_path / "src" / data
    original = pq.read_table(path)
    _edit_table(path, lambda t: t.drop_columns(["action"]))
    assert _import_error(tmp_path / "src", tmp_path) == f"{path} lacks the column 'action'"
    pq.write_table(_replace(original, "frame_index", original.column("frame_index").cast(pa.float64())), path)
    assert _import_error(tmp_path / "src", tmp_path) == f"{path}: column 'frame_index' has type double, expected integers"
    strings = pa.array([[str(v) for v in row] for row in original.column("action").to_pylist()])
    pq.write_table(_replace(original, "action", strings), path)
    message = _import_error(tmp_path / "src", tmp_path)
    assert message.startswith(f"{path}: column 'action' has type list<") and message.endswith("expected a list of 3 floats per row")
    pq.write_table(_replace(original, "next.success", pa.array(["yes"] * original.num_rows)), path)
    assert f"{path}: column 'next.success'" in _import_error(tmp_path / "src", tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    assert _import_error(tmp_path / "src", tmp_path).startswith(f"{path}: cannot read the data parquet")


def test_episode_index_problems(tmp_path):
    write_v30(tmp_path / "v30")
    episodes = tmp_path / "v30" / V30_EPISODES
    _edit_table(episodes, lambda t: t.drop_columns([f"videos/{CAMERA}/from_timestamp"]))
    assert _import_error(tmp_path / "v30", tmp_path) == f"{episodes} lacks the column(s) videos/{CAMERA}/from_timestamp"
    write_v21(tmp_path / "v21")
    jsonl = tmp_path / "v21/meta/episodes.jsonl"
    jsonl.write_text(jsonl.read_text() + "{oops\n")
    assert _import_error(tmp_path / "v21", tmp_path).startswith(f"{jsonl} line 4 is not valid JSON")


def test_truncated_mp4(tmp_path):
    for writer, video in ((write_v21, V21_VIDEO), (write_v30, V30_VIDEO)):
        root = tmp_path / writer.__name__
        writer(root)
        path = root / video
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        message = _import_error(root, tmp_path)
        assert message.startswith(f"{path}: "), message


def test_frame_count_must_match_row_count(tmp_path):
    synthetic = write_v21(tmp_path / "src")
    video = tmp_path / "src" / V21_VIDEO
    frames = synthetic.frames[1]  # (9, H, W, 3)
    encode_mp4(video, frames[:-2])
    assert _import_error(tmp_path / "src", tmp_path) == (
        f"{video}: episode 1 has 9 data rows but 7 video frames (none at 0.700000 s): "
        "the video is truncated or does not match the rows"
    )
    encode_mp4(video, np.concatenate([frames, episode_frames(1, 2, 32)]))
    assert _import_error(tmp_path / "src", tmp_path) == f"{video}: episode 1 has more video frames than its 9 data rows"
    encode_mp4(video, frames)
    jsonl = tmp_path / "src/meta/episodes.jsonl"
    jsonl.write_text(jsonl.read_text().replace('"length": 9', '"length": 10'))
    data = tmp_path / "src" / V21_DATA
    assert _import_error(tmp_path / "src", tmp_path) == f"{data}: episode 1 has 9 rows, expected its length 10 from the episode index"


def test_v30_episode_window_must_match_rows(tmp_path):
    write_v30(tmp_path / "src")
    episodes = tmp_path / "src" / V30_EPISODES
    key = f"videos/{CAMERA}/to_timestamp"
    # Episode 0 (8 rows at 10 fps) claims to end after 0.5 s: its window holds 5 frames.
    _edit_table(episodes, lambda t: _replace(t, key, pa.array([0.5] + t.column(key).to_pylist()[1:])))
    message = _import_error(tmp_path / "src", tmp_path)
    assert message.startswith(f"{tmp_path / 'src' / V30_VIDEO}: episode 0 has 8 data rows but 5 video frames"), message


# -- property test: random corruption never escapes as anything but DataError ----------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=4,
)
_INFO_KEYS = ["codebase_version", "fps", "features", "total_episodes", "chunks_size", "data_path", "video_path", "robot_type"]
_FEATURE_FIELDS = [("action", "shape"), ("action", "dtype"), ("action", "names"), (CAMERA, "dtype"), (CAMERA, "shape")]
_COLUMNS = ["action", "episode_index", "frame_index", "next.success", "index", CAMERA]
_RETYPES = ["string", "float", "int", "null", "list"]

_corruption = st.one_of(
    st.tuples(st.just("drop_info_key"), st.sampled_from(_INFO_KEYS)),
    st.tuples(st.just("set_info_key"), st.sampled_from(_INFO_KEYS), _JSON),
    st.tuples(st.just("set_feature_field"), st.sampled_from(_FEATURE_FIELDS), _JSON),
    st.tuples(st.just("drop_column"), st.sampled_from(_COLUMNS)),
    st.tuples(st.just("retype_column"), st.sampled_from(_COLUMNS), st.sampled_from(_RETYPES)),
    st.tuples(st.just("truncate_mp4"), st.floats(0.0, 1.0)),
    st.tuples(st.just("truncate_images"), st.floats(0.0, 1.0)),
    st.tuples(st.just("retype_episode_meta"), st.integers(0, 20), st.sampled_from(_RETYPES)),
)


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("lerobot_templates")
    write_v21(base / "v2.1", episodes=2, length=4)
    write_v30(base / "v3.0", episodes=2, length=4)
    write_v30(base / "v3.0-images", episodes=2, length=4, images=True)
    return {p.name: p for p in base.iterdir()}


def _retyped(n: int, kind: str) -> pa.Array:
    return {
        "string": lambda: pa.array(["x"] * n),
        "float": lambda: pa.array(np.linspace(0, 1, n)),
        "int": lambda: pa.array(np.arange(n) * 7),
        "null": lambda: pa.nulls(n),
        "list": lambda: pa.array([[1.5]] * n),
    }[kind]()


def _corrupt(root: Path, corruption: tuple) -> None:
    kind, *args = corruption
    data_file = sorted((root / "data").rglob("*.parquet"))[0]
    if kind == "drop_info_key":
        _edit_info(root, lambda i: i.pop(args[0], None))
    elif kind == "set_info_key":
        _edit_info(root, lambda i: i.update({args[0]: args[1]}))
    elif kind == "set_feature_field":
        (feature, field), value = args
        _edit_info(root, lambda i: i["features"][feature].update({field: value}))
    elif kind == "drop_column":
        _edit_table(data_file, lambda t: t.drop_columns([c for c in t.column_names if c == args[0]]))
    elif kind == "retype_column":
        name, new = args
        _edit_table(data_file, lambda t: _replace(t, name, _retyped(t.num_rows, new)) if name in t.column_names else t)
    elif kind == "truncate_mp4":
        videos = sorted((root / "videos").rglob("*.mp4"))
        if videos:
            videos[0].write_bytes(videos[0].read_bytes()[: int(args[0] * videos[0].stat().st_size)])
    elif kind == "truncate_images":
        def cut(t: pa.Table) -> pa.Table:
            if CAMERA not in t.column_names:
                return t
            rows = t.column(CAMERA).to_pylist()
            cut_rows = [{"bytes": r["bytes"][: int(args[0] * len(r["bytes"]))], "path": r["path"]} for r in rows]
            return _replace(t, CAMERA, pa.array(cut_rows, type=t.schema.field(CAMERA).type))
        _edit_table(data_file, cut)
    elif kind == "retype_episode_meta":
        index, new = args
        meta = root / V30_EPISODES
        if meta.exists():
            _edit_table(meta, lambda t: _replace(t, t.column_names[index % t.num_columns], _retyped(t.num_rows, new)))
        else:
            lines = (root / "meta/episodes.jsonl").read_text().splitlines()
            record = json.loads(lines[0])
            record[sorted(record)[index % len(record)]] = _retyped(1, new).to_pylist()[0]
            (root / "meta/episodes.jsonl").write_text("\n".join([json.dumps(record), *lines[1:]]))


@settings(max_examples=25, deadline=None)
@given(layout=st.sampled_from(["v2.1", "v3.0", "v3.0-images"]), corruption=_corruption)
def test_random_corruption_raises_only_data_error(templates, layout, corruption):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "src"
        shutil.copytree(templates[layout], root)
        _corrupt(root, corruption)
        try:
            import_lerobot(root, Path(tmp) / "native")
        except DataError as e:
            assert str(e) and "\n" not in str(e)


def test_empty_video_path_is_reported_not_misread(tmp_path):
    # Found by the property test: an empty template once made the reader look for images.
    write_v30(tmp_path / "src")
    _edit_info(tmp_path / "src", lambda i: i.update(video_path=""))
    assert _import_error(tmp_path / "src", tmp_path) == f"video file {tmp_path / 'src'} does not exist"


def test_an_import_refuses_an_occupied_folder_first_and_a_failed_one_leaves_no_partial(tmp_path, capsys):
    from hma.cli import main

    write_v21(tmp_path / "src")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    # Refused before the source is read: a source that does not exist is not what the error names.
    with pytest.raises(DataError, match=f"^{busy} already exists and is not empty, expected a new or empty folder"):
        import_lerobot(tmp_path / "nowhere", busy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "src"]
    assert (busy / "notes.txt").read_text() == "mine"
    # An empty folder takes the import; a finished dataset is refused, without advice of a flag the command lacks.
    (tmp_path / "empty").mkdir()
    import_lerobot(tmp_path / "src", tmp_path / "empty")
    assert main(["data", "import-lerobot", str(tmp_path / "src"), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert f"dataset {tmp_path / 'empty'} already exists, expected a new folder to import into" in err
    assert "overwrite" not in err and "Traceback" not in err
    # A failure after some episodes were converted deletes what it staged.
    video = tmp_path / "src" / V21_VIDEO  # episode 1: episode 0 is staged first
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with pytest.raises(DataError, match=str(video)):
        import_lerobot(tmp_path / "src", tmp_path / "native")
    assert not (tmp_path / "native").exists() and not (tmp_path / "native.partial").exists()
