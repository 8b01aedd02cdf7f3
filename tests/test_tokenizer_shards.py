"""Token shards (`hma tokenize`), `hma tokenizer eval`, and external diffusers autoencoders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from hma.cli import main
from hma.data.store import EpisodeStore
from hma.errors import DataError
from hma.io import sha256_file
from hma.tokenizer import load_tokenizer, open_token_shard, tokenize_dataset
from hma.tokenizer.shards import shard_path
from hma.tokenizer.external import DiffusersKLTokenizer

from _helpers_threads import one_thread
from _helpers_tokenizer import make_image_store, train_tiny


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    make_image_store(root / "data" / "a", embodiment="a", episodes=3, length=12, seed=0)
    make_image_store(root / "data" / "b", embodiment="b", episodes=3, length=12, seed=1)
    for kind in ("discrete", "continuous"):
        train_tiny([root / "data"], root / kind, kind, steps=4)
    return root


def test_tokenize_writes_then_skips(setup, capsys):
    data, tok_dir = setup / "data", setup / "discrete"
    assert main(["tokenize", "--data", str(data), "--tokenizer", str(tok_dir), "--batch-size", "5"]) == 0
    assert "frames/s" in capsys.readouterr().out
    tok = load_tokenizer(tok_dir)
    store = EpisodeStore(data / "a")
    shard = open_token_shard(store, tok, verify=True)
    assert shard.array.dtype == np.int32 and shard.array.shape == (store.num_frames, 8, 8)
    np.testing.assert_array_equal(shard.array[:7], tok.encode(store.frames[:7]).numpy())
    meta = json.loads((shard_path(store, tok) / "tokens.json").read_text())
    assert shard.path == data / "a" / "tokens" / f"discrete-{tok.identity}" and meta["identity"] == tok.identity
    assert meta["fingerprint"] == tok.fingerprint and meta["vocab_size"] == tok.vocab_size
    assert meta["dataset_frames_sha256"] == sha256_file(data / "a" / "frames.npy")
    mtime = (shard.path / "tokens.npy").stat().st_mtime_ns
    assert main(["tokenize", "--data", str(data), "--tokenizer", str(tok_dir)]) == 0
    assert capsys.readouterr().out.count("up to date, skipped") == 2
    assert (shard.path / "tokens.npy").stat().st_mtime_ns == mtime


def test_latent_shard_is_float16_and_scaled(setup):
    tok = load_tokenizer(setup / "continuous")
    store = EpisodeStore(setup / "data" / "b")
    shard, skipped = tokenize_dataset(store, tok, progress=False)
    assert not skipped
    assert shard.array.dtype == np.float16 and shard.array.shape == (store.num_frames, 4, 8, 8)
    expected = tok.encode(store.frames[:5]).numpy()
    np.testing.assert_allclose(shard.array[:5].astype(np.float32), expected, rtol=1e-2, atol=1e-2)


def test_tokenize_resumes_after_a_kill(setup, monkeypatch):
    tok = load_tokenizer(setup / "discrete")
    store = EpisodeStore(setup / "data" / "b")
    shutil.rmtree(shard_path(store, tok), ignore_errors=True)  # start from scratch
    real_encode, calls = tok.encode, {"n": 0}

    def encode_then_die(frames):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real_encode(frames)

    monkeypatch.setattr(tok, "encode", encode_then_die)
    with pytest.raises(KeyboardInterrupt):
        tokenize_dataset(store, tok, batch_size=4, chunk_frames=8, progress=False)
    partial = store.root / "tokens" / f"discrete-{tok.identity}.partial"
    assert json.loads((partial / "progress.json").read_text())["done"] == 8
    with pytest.raises(DataError, match="unfinished"):
        open_token_shard(store, tok)
    encoded = []
    monkeypatch.setattr(tok, "encode", lambda frames: encoded.append(len(frames)) or real_encode(frames))
    shard, _ = tokenize_dataset(store, tok, batch_size=4, chunk_frames=8, progress=False)
    assert sum(encoded) == store.num_frames - 8  # only the rows after the last finished chunk
    np.testing.assert_array_equal(shard.array, real_encode(store.frames).numpy())
    assert not partial.exists()


def test_open_token_shard_rejects_bad_shards(setup, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(setup / "data" / "a", data / "a", ignore=shutil.ignore_patterns("tokens"))
    store = EpisodeStore(data / "a")
    tok = load_tokenizer(setup / "discrete")
    with pytest.raises(DataError, match="run `hma tokenize` first"):
        open_token_shard(store, tok)
    shard, _ = tokenize_dataset(store, tok, progress=False)
    file = shard.path / "tokens.npy"
    with open(file, "r+b") as f:
        f.truncate(file.stat().st_size - 10)
    with pytest.raises(DataError, match="truncated"):
        open_token_shard(store, "discrete")
    meta = json.loads((shard.path / "tokens.json").read_text())
    (shard.path / "tokens.json").write_text(json.dumps({**meta, "fingerprint": "0" * 64}))
    with pytest.raises(DataError, match="tokenizer weights 000000000000"):
        open_token_shard(store, tok)


def test_two_tokenizers_of_one_name_keep_a_shard_each(setup, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(setup / "data" / "a", data / "a", ignore=shutil.ignore_patterns("tokens"))
    store = EpisodeStore(data / "a")
    first = load_tokenizer(setup / "discrete")
    second = train_tiny([data], tmp_path / "discrete", "discrete", steps=2, seed=1)  # same name, other weights
    assert first.name == second.name and first.identity != second.identity
    one, _ = tokenize_dataset(store, first, progress=False)
    with pytest.raises(DataError, match="only other tokenizers named 'discrete' have shards here"):
        open_token_shard(store, second)
    two, skipped = tokenize_dataset(store, second, progress=False)
    assert not skipped and one.path != two.path
    # Neither replaced the other: each opens its own, with its own tokens.
    for tok in (first, second):
        shard = open_token_shard(store, tok, verify=True)
        np.testing.assert_array_equal(shard.array[:6], tok.encode(store.frames[:6]).numpy())
    assert tokenize_dataset(store, first, progress=False)[1]  # still current
    with pytest.raises(DataError, match="shards of 2 tokenizers named 'discrete'"):
        open_token_shard(store, "discrete")


def test_a_shard_written_before_the_identity_key_is_still_read(setup, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(setup / "data" / "a", data / "a", ignore=shutil.ignore_patterns("tokens"))
    store = EpisodeStore(data / "a")
    tok = load_tokenizer(setup / "discrete")
    shard, _ = tokenize_dataset(store, tok, progress=False)
    legacy = store.root / "tokens" / "discrete"  # how shards were named before: the tokenizer's name alone
    shard.path.rename(legacy)
    meta = json.loads((legacy / "tokens.json").read_text())
    del meta["identity"]
    (legacy / "tokens.json").write_text(json.dumps(meta))
    for key in (tok, "discrete"):
        assert open_token_shard(store, key, verify=True).path == legacy
    other = train_tiny([data], tmp_path / "discrete", "discrete", steps=2, seed=1)
    with pytest.raises(DataError, match="tokenizer weights"):
        open_token_shard(store, other)  # another tokenizer of that name is not given it


def test_eval_prints_and_writes_figures(setup, tmp_path, capsys):
    out = tmp_path / "eval.json"
    with one_thread():
        assert main(["tokenizer", "eval", "--tokenizer", str(setup / "discrete"), "--data", str(setup / "data"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PSNR" in printed and "encode+decode" in printed
    figures = json.loads(out.read_text())
    assert [r["embodiment"] for r in figures["per_embodiment"]] == ["a", "b"]
    assert figures["per_embodiment"][0]["frames"] == 12  # the last episode of three is held out
    assert 0 < figures["code_usage"] <= 1 and figures["roundtrip_fps"] > 0 and figures["psnr"] > 5
    assert 0 <= figures["static_token_changes"] <= 1 and "static flips" in printed


def test_static_token_changes_count_flips_only_where_no_pixel_moved():
    from hma.eval.tokenizer import static_token_changes

    frames = np.zeros((3, 8, 8, 3), np.uint8)  # 2x2 grid of 4x4-pixel patches
    frames[1, 0:4, 0:4] = 200  # frame 0 -> 1: the top-left patch moves
    frames[2, 0:4, 0:4] = 200
    frames[2, 5, 5] = 5  # frame 1 -> 2: a change below the threshold
    tokens = np.zeros((3, 2, 2), np.int64)
    tokens[1, 0, 0] = 1  # follows the moved patch: not a flip
    tokens[1, 1, 1] = 7  # the bottom-right patch did not move: a flip
    tokens[2] = tokens[1]
    tokens[2, 0, 1] = 3  # static: a flip
    flips, static = static_token_changes(frames, tokens, pairs=np.array([0, 1]))
    assert (flips, static) == (2, 3 + 4)
    assert static_token_changes(frames, tokens, pairs=np.array([], np.int64)) == (0, 0)
    with pytest.raises(DataError, match="token grid"):
        static_token_changes(frames[:, :7], tokens, pairs=np.array([0]))


def test_cli_reports_corrupt_checkpoint(setup, tmp_path, capsys):
    run = tmp_path / "broken"
    shutil.copytree(setup / "continuous", run)
    (run / "model.safetensors").write_bytes(b"not a safetensors file")
    assert main(["tokenizer", "eval", "--tokenizer", str(run), "--data", str(setup / "data")]) == 2
    assert "model.safetensors" in capsys.readouterr().err


@one_thread()
def test_external_diffusers_autoencoder(setup, tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.5,
    )
    vae.save_pretrained(tmp_path / "tiny_vae")
    tok = load_tokenizer(tmp_path / "tiny_vae")
    assert isinstance(tok, DiffusersKLTokenizer) and tok.kind == "continuous"
    assert tok.grid == (16, 16) and tok.latent_channels == 4 and tok.image_size == (32, 32)
    assert tok.fingerprint == sha256_file(tmp_path / "tiny_vae" / "diffusion_pytorch_model.safetensors")
    frames = np.array(EpisodeStore(setup / "data" / "a").frames[:3])
    z = tok.encode(frames)
    assert z.shape == (3, 4, 16, 16)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        torch.testing.assert_close(z, vae.encode(x).latent_dist.mean * 0.5)
    recon = tok.decode(z)
    assert recon.dtype == torch.uint8 and recon.shape == (3, 32, 32, 3)
    shard, _ = tokenize_dataset(EpisodeStore(setup / "data" / "a"), tok, progress=False)
    assert shard.array.shape[1:] == (4, 16, 16) and shard.meta["tokenizer"] == "tiny_vae"


@one_thread()
def test_train_cli_resume_flag_and_corrupt_state(setup, tmp_path, capsys):
    data = str(setup / "data")
    args = ["tokenizer", "train", "--data", data, "--kind", "discrete"]
    assert main([*args, "--out", str(tmp_path / "new"), "--steps", "1", "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err
    shutil.copytree(setup / "discrete", tmp_path / "run")
    (tmp_path / "run" / "training_state" / "optimizer.safetensors").write_bytes(b"\x01" * 20)
    assert main([*args, "--out", str(tmp_path / "run"), "--steps", "8"]) == 2
    assert "optimizer.safetensors" in capsys.readouterr().err
