"""Token shards and the CLI on damaged inputs: one clear error naming the file, exit code 2."""

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hma.cli import main as cli_main
from hma.errors import DataError
from hma.tokenizer import load_tokenizer
from hma.tokenizer.shards import open_token_shard

from _helpers_files import flip_byte, mangle_json_field
from _helpers_robustness import make_pipeline

TOKENIZER = "tok"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return make_pipeline(tmp_path_factory.mktemp("pipeline"))


def _copy_dataset(pipeline, tmp_path_factory):
    dst = tmp_path_factory.mktemp("shard") / "square"
    shutil.copytree(pipeline.dataset, dst)
    return dst, open_token_shard(dst, TOKENIZER).path  # tokens/tok-<identity>


def test_the_pristine_shard_opens_and_verifies(pipeline):
    shard = open_token_shard(pipeline.dataset, TOKENIZER, verify=True)
    assert shard.array.shape == (120, 4, 4) and shard.array.dtype == np.int32


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 0.999))
def test_truncated_shard(pipeline, tmp_path_factory, cut):
    dataset, shard = _copy_dataset(pipeline, tmp_path_factory)
    data = (shard / "tokens.npy").read_bytes()
    (shard / "tokens.npy").write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(DataError, match=str(shard / "tokens.npy")):
        open_token_shard(dataset, TOKENIZER)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.floats(0.0, 0.999), byte=st.integers(1, 255))
def test_flipped_byte_in_shard_fails_verification(pipeline, tmp_path_factory, pos, byte):
    dataset, shard = _copy_dataset(pipeline, tmp_path_factory)
    flip_byte(shard / "tokens.npy", pos, byte)
    with pytest.raises(DataError, match=str(shard / "tokens.npy")):
        open_token_shard(dataset, TOKENIZER, verify=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["tokenizer", "identity", "fingerprint", "num_frames", "dataset_frames_sha256", "file", "dtype",
                            "shape", "files"]),
       value=st.none() | st.integers(-3, 3) | st.text(max_size=4) | st.lists(st.integers(0, 4), max_size=3),
       drop=st.booleans())
def test_mangled_shard_metadata(pipeline, tmp_path_factory, key, value, drop):
    dataset, shard = _copy_dataset(pipeline, tmp_path_factory)
    original = mangle_json_field(shard / "tokens.json", key, value, drop)
    try:
        # With the tokenizer itself (not its name) the fingerprint is checked too.
        open_token_shard(dataset, load_tokenizer(pipeline.tokenizer), verify=True)
    except DataError as e:
        assert str(shard) in str(e)
        return
    assert not drop and value == original  # only an unchanged field may still open


def test_unfinished_shard_says_how_to_resume(pipeline, tmp_path_factory):
    dataset, shard = _copy_dataset(pipeline, tmp_path_factory)
    shard.rename(shard.with_name(shard.name + ".partial"))
    with pytest.raises(DataError, match="unfinished run left a .partial folder"):
        open_token_shard(dataset, TOKENIZER)


def test_stale_shard_after_the_frames_changed(pipeline, tmp_path_factory):
    dataset, shard = _copy_dataset(pipeline, tmp_path_factory)
    meta = json.loads((dataset / "metadata.json").read_text())
    meta["files"]["frames.npy"]["sha256"] = "0" * 64
    (dataset / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="other frames"):
        open_token_shard(dataset, TOKENIZER)


def _cli_error(capsys, *args):
    code = cli_main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("hma: error: ") and "Traceback" not in err, err
    return err


def test_cli_tokenize_with_a_corrupt_tokenizer(pipeline, tmp_path, capsys):
    tok = tmp_path / "tok"
    shutil.copytree(pipeline.tokenizer, tok)
    (tok / "model.safetensors").write_bytes((tok / "model.safetensors").read_bytes()[:100])
    err = _cli_error(capsys, "tokenize", "--data", pipeline.data, "--tokenizer", tok)
    assert str(tok / "model.safetensors") in err


def test_cli_train_on_a_truncated_shard(pipeline, tmp_path_factory, capsys):
    dataset, shard = _copy_dataset(pipeline, tmp_path_factory)
    (shard / "tokens.npy").write_bytes((shard / "tokens.npy").read_bytes()[:500])
    err = _cli_error(capsys, "train", "--data", dataset, "--tokenizer", pipeline.tokenizer, "--config",
                     pipeline.model_config, "--out", tmp_path_factory.mktemp("out") / "run", "--steps", 2,
                     "--no-progress")
    assert str(shard / "tokens.npy") in err


def test_cli_model_info_on_a_corrupt_run(pipeline, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(pipeline.run, run)
    (run / "config.json").write_text('{"model": ')
    err = _cli_error(capsys, "model", "info", "--run", run)
    assert str(run / "config.json") in err


def test_cli_data_info_on_a_truncated_dataset(pipeline, tmp_path_factory, capsys):
    dataset, _ = _copy_dataset(pipeline, tmp_path_factory)
    (dataset / "actions.npy").write_bytes((dataset / "actions.npy").read_bytes()[:64])
    err = _cli_error(capsys, "data", "info", dataset, "--verify")
    assert "actions.npy" in err


def test_cli_synth_from_a_missing_run(tmp_path, capsys):
    err = _cli_error(capsys, "synth", "--run", tmp_path / "nowhere", "--embodiment", "square", "--episodes", 1,
                     "--out", tmp_path / "synth")
    assert str(tmp_path / "nowhere") in err
