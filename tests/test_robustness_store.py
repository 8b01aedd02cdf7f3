"""Property-based fuzzing of the episode store reader: any damage -> one DataError."""

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hma.data.store import EpisodeStore
from hma.errors import DataError

from _helpers_files import flip_byte, mangle_json_field
from _helpers_store import make_store

FILES = ["frames.npy", "actions.npy", "episode_starts.npy", "success.npy", "metadata.json"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "d"
    make_store(root, episodes=2, length=6, image_size=8, success=True)
    return root


def _copy(pristine, tmp_path_factory):
    dst = tmp_path_factory.mktemp("case") / "d"
    shutil.copytree(pristine, dst)
    return dst


def _open_fully(root):
    store = EpisodeStore(root, verify=True)
    for e in range(store.num_episodes):
        ep = store.episode(e)
        np.asarray(ep["frames"]).sum()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(FILES), cut=st.floats(0.0, 0.999))
def test_truncated_file(pristine, tmp_path_factory, name, cut):
    root = _copy(pristine, tmp_path_factory)
    path = root / name
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(DataError) as e:
        _open_fully(root)
    assert name in str(e.value) or "metadata" in str(e.value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(FILES[:-1]), pos=st.floats(0.0, 0.999), byte=st.integers(1, 255))
def test_flipped_byte_fails_checksum_or_header(pristine, tmp_path_factory, name, pos, byte):
    root = _copy(pristine, tmp_path_factory)
    path = root / name
    flip_byte(path, pos, byte)
    with pytest.raises(DataError):
        _open_fully(root)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["schema_version", "action_names", "image_size", "num_episodes", "num_frames",
                            "files", "action_stats", "control_hz", "embodiment"]),
       value=_JSON, drop=st.booleans())
def test_mangled_metadata_field(pristine, tmp_path_factory, key, value, drop):
    root = _copy(pristine, tmp_path_factory)
    original = mangle_json_field(root / "metadata.json", key, value, drop)
    try:
        _open_fully(root)
    except DataError:
        return
    # The reader may accept a change only when it is harmless to reading the arrays.
    assert not drop and (value == original or key in ("embodiment", "control_hz", "action_stats"))
