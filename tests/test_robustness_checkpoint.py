"""Property-based fuzzing of the checkpoint loaders (``hma.load``, ``load_tokenizer``): any
truncation, flipped bit, mangled config field or missing file either loads to exactly the
original values or fails with one hma error naming the file.

Weights are checksummed and each config.json is sealed with the checksum of its content
(``hma.io.seal``), so damage that leaves valid JSON of another meaning is refused too. The
``resealed`` cases write a mangled config with a fresh seal, as a buggy writer would: then
the loader's own validation must turn it into a clear error or a working model."""

import json
import shutil

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hma
from hma.errors import CheckpointError, ConfigError, DataError, HmaError
from hma.io import SEAL_KEY, seal
from hma.tokenizer import load_tokenizer
from hma.train import TrainConfig, train

from _helpers_files import flip_byte
from _helpers_robustness import make_pipeline

# What hma.load reads: the run's weights and config, and the run's copy of the tokenizer.
RUN_FILES = ["model.safetensors", "config.json", "tokenizer/model.safetensors", "tokenizer/config.json"]
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LOAD_ERRORS = (CheckpointError, DataError, ConfigError)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return make_pipeline(tmp_path_factory.mktemp("pipeline"))


def _copy_run(pipeline, tmp_path_factory):
    dst = tmp_path_factory.mktemp("case") / "run"
    for name in RUN_FILES:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pipeline.run / name, dst / name)
    return dst


def _load_fails_naming(run, name):
    with pytest.raises(LOAD_ERRORS) as e:
        hma.load(run)
    message = str(e.value)
    # The file's path, or its folder and its name ("RUN holds no model.safetensors"), or for
    # the tokenizer's weights the folder whose fingerprint differs from the one trained with.
    assert (str(run / name) in message or (str(run) in message and name.split("/")[-1] in message)
            or (name.startswith("tokenizer/") and str(run / "tokenizer") in message)), message
    assert "\n" not in str(e.value)  # one sentence, not a traceback pasted into a message


def _loads_as_the_original(run, pipeline):
    """``run`` loads to the same config, tokenizer config and weights as the pristine run."""
    loaded, pristine = hma.load(run), hma.load(pipeline.run)
    assert loaded.config == pristine.config
    assert loaded.tokenizer.config == pristine.tokenizer.config
    for (name, a), (_, b) in zip(loaded.model.state_dict().items(), pristine.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_the_pristine_run_loads(pipeline):
    loaded = hma.load(pipeline.run)
    assert "square" in loaded.embodiments and loaded.tokenizer.grid == (4, 4)
    written = json.loads((pipeline.run / "config.json").read_text())
    assert SEAL_KEY in written and SEAL_KEY not in loaded.config  # sealed on disk, plain in memory


def test_a_sealed_config_refuses_a_changed_value_and_accepts_reformatting(pipeline, tmp_path_factory):
    run = _copy_run(pipeline, tmp_path_factory)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config, indent=None, sort_keys=True))  # same content, new layout
    _loads_as_the_original(run, pipeline)
    config["model"]["frame_hz"] = config["model"]["frame_hz"] * 2  # valid, and not what was trained
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=f"config.json does not match the {SEAL_KEY}"):
        hma.load(run)
    damaged = {("config_sia256" if k == SEAL_KEY else k): v for k, v in config.items()}  # one flipped byte in the key
    (run / "config.json").write_text(json.dumps(damaged))
    with pytest.raises(CheckpointError, match="has a key 'config_sia256' where hma writes 'config_sha256'"):
        hma.load(run)
    del config[SEAL_KEY]  # the documented way to load a hand edit
    (run / "config.json").write_text(json.dumps(config))
    assert hma.load(run).config["model"]["frame_hz"] == config["model"]["frame_hz"]


@FUZZ
@given(name=st.sampled_from(RUN_FILES), cut=st.floats(0.0, 0.999))
@example(name="tokenizer/config.json", cut=0.999)  # only the trailing newline goes
@example(name="config.json", cut=0.5)
def test_truncated_checkpoint_file(pipeline, tmp_path_factory, name, cut):
    run = _copy_run(pipeline, tmp_path_factory)
    data = (run / name).read_bytes()
    kept = data[: int(len(data) * cut)]
    (run / name).write_bytes(kept)
    if name.endswith(".json") and not data[len(kept):].strip():
        # Only the JSON's trailing newline went (cut 0.999 of a 410-byte file): the same
        # document, which must load as before rather than fail.
        _loads_as_the_original(run, pipeline)
        return
    _load_fails_naming(run, name)


@FUZZ
@given(name=st.sampled_from(["model.safetensors", "tokenizer/model.safetensors"]), pos=st.floats(0.0, 0.999),
       byte=st.integers(1, 255))
def test_flipped_bit_in_weights(pipeline, tmp_path_factory, name, pos, byte):
    # Weights are checksummed (config.json records model.safetensors' sha256, the tokenizer's
    # fingerprint is its sha256), so even a flip inside a tensor's bytes is caught.
    run = _copy_run(pipeline, tmp_path_factory)
    flip_byte(run / name, pos, byte)
    _load_fails_naming(run, name)


@FUZZ
@given(name=st.sampled_from(["config.json", "tokenizer/config.json"]), pos=st.floats(0.0, 0.999),
       byte=st.integers(1, 255))
def test_flipped_byte_in_config(pipeline, tmp_path_factory, name, pos, byte):
    run = _copy_run(pipeline, tmp_path_factory)
    flip_byte(run / name, pos, byte)
    try:
        hma.load(run)
    except HmaError as e:
        assert str(run / name) in str(e) or str(run / "tokenizer") in str(e)
        return
    # A flip that leaves valid JSON of the same meaning (a space, a letter of the seal's own
    # key) may load; a digit of a statistic may not, since the seal no longer matches.
    _loads_as_the_original(run, pipeline)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-4, 4) | st.floats(-4, 4) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=5,
)
_MODEL_FIELDS = ["kind", "num_blocks", "width", "num_heads", "mlp_ratio", "grid", "num_frames", "frame_hz",
                 "vocab_size", "vocab_factors", "injection", "embodiments"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from(["top", "model", "embodiment"]), key=st.sampled_from(_MODEL_FIELDS + [
    "model", "tokenizer", "name", "action_dim", "chunk", "mean", "std"]), value=_JSON, drop=st.booleans(),
       resealed=st.booleans())
def test_mangled_run_config_field(pipeline, tmp_path_factory, section, key, value, drop, resealed):
    run = _copy_run(pipeline, tmp_path_factory)
    config = json.loads((run / "config.json").read_text())
    original = json.loads(json.dumps(config))
    target = {"top": config, "model": config["model"], "embodiment": config["model"]["embodiments"]["square"]}[section]
    if drop:
        target.pop(key, None)
    else:
        target[key] = value
    (run / "config.json").write_text(json.dumps(seal(config) if resealed else config))
    try:
        hma.load(run)
    except LOAD_ERRORS as e:
        assert str(run / "config.json") in str(e) or str(run / "model.safetensors") in str(e)
        assert "\n" not in str(e)
        return
    if not resealed or config == original:
        _loads_as_the_original(run, pipeline)


@pytest.mark.parametrize("key, value", [("width", "wide"), ("num_heads", 0), ("grid", [4]), ("mlp_ratio", -1.0),
                                        ("embodiments", {"square": 3}), ("num_blocks", 2)])
def test_run_config_that_cannot_match_the_weights_fails(pipeline, tmp_path_factory, key, value):
    run = _copy_run(pipeline, tmp_path_factory)
    config = json.loads((run / "config.json").read_text())
    config["model"][key] = value
    (run / "config.json").write_text(json.dumps(seal(config)))  # past the seal: the builder must refuse it
    with pytest.raises(CheckpointError, match="config.json|model.safetensors"):
        hma.load(run)


_TOKENIZER_FIELDS = ["format", "kind", "name", "image_size", "downsample", "channels", "num_res_blocks",
                     "fsq_levels", "vocab_size", "recon_loss", "grid"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(_TOKENIZER_FIELDS), value=_JSON, drop=st.booleans(), resealed=st.booleans())
def test_mangled_tokenizer_config_field(pipeline, tmp_path_factory, key, value, drop, resealed):
    folder = tmp_path_factory.mktemp("tok") / "tok"
    folder.mkdir()
    for name in ("model.safetensors", "config.json"):
        shutil.copyfile(pipeline.tokenizer / name, folder / name)
    config = json.loads((folder / "config.json").read_text())
    original = json.loads(json.dumps(config))
    if drop:
        config.pop(key, None)
    else:
        config[key] = value
    (folder / "config.json").write_text(json.dumps(seal(config) if resealed else config))
    try:
        loaded = load_tokenizer(folder)
    except CheckpointError as e:
        assert str(folder) in str(e) and "\n" not in str(e)
        return
    if not resealed or config == original:
        assert loaded.config == load_tokenizer(pipeline.tokenizer).config


@pytest.mark.parametrize("name", RUN_FILES)
def test_missing_checkpoint_file(pipeline, tmp_path_factory, name):
    run = _copy_run(pipeline, tmp_path_factory)
    (run / name).unlink()
    _load_fails_naming(run, name)


def test_missing_run_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="holds no model.safetensors"):
        hma.load(tmp_path / "nowhere")


def _resume_config(pipeline, run):
    # The run's own data and settings (a resume refuses others before it reads the training state).
    return TrainConfig(data=[str(pipeline.data)], out=str(run), steps=6, batch_size=4, warmup=2, eval_windows=8,
                       resume=True, progress=False, checkpoint_every=2)


@pytest.mark.parametrize("name", ["optimizer.safetensors", "rng.safetensors", "state.json"])
def test_truncated_training_state_refuses_to_resume(pipeline, tmp_path, name):
    run = tmp_path / "run"
    shutil.copytree(pipeline.run, run)
    path = run / "training_state" / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(LOAD_ERRORS, match=str(path)):
        train(_resume_config(pipeline, run))


def test_interrupted_checkpoint_pair_refuses_to_resume(pipeline, tmp_path):
    # A kill between the renames of save_checkpoint leaves config.json and training_state at
    # different steps: resuming must say so rather than mix the two.
    run = tmp_path / "run"
    shutil.copytree(pipeline.run, run)
    state = json.loads((run / "training_state" / "state.json").read_text())
    state["step"] -= 2
    (run / "training_state" / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="interrupted"):
        train(_resume_config(pipeline, run))
