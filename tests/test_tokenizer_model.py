"""Tokenizer models: FSQ, shapes, determinism, training, resume, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hma.errors import CheckpointError, ConfigError, DataError
from hma.tokenizer import TokenizerConfig, load_tokenizer
from hma.tokenizer.frames import FramePool
from hma.tokenizer.fsq import FSQ, levels_for_vocab
from hma.tokenizer.protocol import Tokenizer
from hma.tokenizer.conv import ConvTokenizer

from _helpers_tokenizer import make_image_store, random_model, train_tiny


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok_data")
    return [make_image_store(root / "a", embodiment="a", seed=0), make_image_store(root / "b", embodiment="b", seed=1)]


@pytest.fixture(scope="module")
def trained(stores, tmp_path_factory):
    root = tmp_path_factory.mktemp("tok_runs")
    data = [s.root for s in stores]
    for kind in ("discrete", "continuous"):
        train_tiny(data, root / kind, kind, steps=40)
    return {kind: root / kind for kind in ("discrete", "continuous")}


def test_fsq_ids_and_codes_agree():
    fsq = FSQ((8, 5, 5, 5))
    z = torch.randn(4, 4, 3, 3, generator=torch.Generator().manual_seed(0)) * 3
    codes, ids = fsq(z)
    assert fsq.vocab_size == 1000 and ids.shape == (4, 3, 3)
    assert ids.min() >= 0 and ids.max() < 1000
    torch.testing.assert_close(fsq.ids_to_codes(ids), codes)
    every = fsq.ids_to_codes(torch.arange(1000).view(1, 10, 100))  # (1, 4, 10, 100)
    assert len(torch.unique(every.flatten(2).transpose(1, 2).reshape(-1, 4), dim=0)) == 1000


def test_fsq_straight_through_gradient():
    fsq = FSQ((7, 5, 5, 5, 5))
    z = torch.randn(2, 5, 2, 2, requires_grad=True)
    fsq(z)[0].sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_vocab_size_maps_to_fsq_levels():
    assert levels_for_vocab(4096) == (7, 5, 5, 5, 5)
    assert TokenizerConfig(vocab_size=1024).vocab_size == 1000
    with pytest.raises(ConfigError, match="vocabulary size 100"):
        TokenizerConfig(vocab_size=100)
    with pytest.raises(ConfigError, match="downsample 3"):
        TokenizerConfig(downsample=3)


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_shapes_dtypes_and_determinism(kind):
    tok = ConvTokenizer(random_model(kind))
    assert isinstance(tok, Tokenizer)
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    tokens = tok.encode(frames)
    assert hasattr(tok, "vocab_size") == (kind == "discrete") and hasattr(tok, "latent_channels") == (kind == "continuous")
    if kind == "discrete":
        assert tokens.dtype == torch.long and tokens.shape == (3, 8, 8)
        assert 0 <= tokens.min() and tokens.max() < tok.vocab_size
    else:
        assert tokens.dtype == torch.float32 and tokens.shape == (3, 4, 8, 8)
    assert torch.equal(tokens, tok.encode(torch.from_numpy(frames)))
    recon = tok.decode(tokens)
    assert recon.dtype == torch.uint8 and recon.shape == (3, 32, 32, 3)
    assert torch.equal(recon, tok.decode(tokens))


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_patch_encoder_tokens_change_only_where_their_pixels_change(kind):
    from _helpers_tokenizer import tiny_config
    from hma.tokenizer.modeling import ConvAutoencoder

    torch.manual_seed(0)
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    frames[1] = frames[0]
    frames[1, 8:12, 20:24] = 255 - frames[1, 8:12, 20:24]  # the pixels of token (2, 5) only
    changed = {}
    for encoder in ("patch", "conv"):
        tok = ConvTokenizer(ConvAutoencoder(tiny_config(kind, encoder=encoder)))
        t = tok.encode(frames).float()
        diff = (t[0] - t[1]).abs()
        changed[encoder] = diff if kind == "discrete" else diff.amax(0)  # (8, 8)
    assert changed["patch"][2, 5] > 0
    changed["patch"][2, 5] = 0
    assert changed["patch"].max() == 0  # no other token moved
    if kind == "continuous":  # the convolutional encoder's latents move around the patch too
        assert (changed["conv"] > 0).sum() > 1
    with pytest.raises(ConfigError, match="encoder 'mlp' is unknown"):
        TokenizerConfig(encoder="mlp")


def test_encode_rejects_wrong_frames():
    tok = ConvTokenizer(random_model("discrete"))
    with pytest.raises(DataError, match=r"expected uint8\[B, 32, 32, 3\]"):
        tok.encode(np.zeros((2, 32, 32, 3), dtype=np.float32))


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_trained_tokenizer_beats_mean_frame(trained, stores, kind):
    tok = load_tokenizer(trained[kind])
    assert tok.kind == kind and tok.grid == (8, 8)
    for store in stores:
        frames = np.asarray(store.frames).astype(np.float64)
        recon = tok.decode(tok.encode(store.frames)).numpy().astype(np.float64)
        mse = ((recon - frames) ** 2).mean()
        mean_frame_mse = ((frames.mean(0, keepdims=True) - frames) ** 2).mean()
        assert mse < 0.7 * mean_frame_mse, (kind, store.embodiment, mse, mean_frame_mse)


def test_latent_scale_gives_unit_variance(trained, stores):
    tok = load_tokenizer(trained["continuous"])
    assert tok.config.latent_scale != 1.0
    z = tok.encode(np.concatenate([np.asarray(s.frames) for s in stores]))
    assert 0.5 < z.std().item() < 2.0


def test_training_is_seeded_and_resumable(stores, tmp_path, monkeypatch):
    data = [s.root for s in stores]
    straight = train_tiny(data, tmp_path / "straight", "continuous", steps=12)
    again = train_tiny(data, tmp_path / "again", "continuous", steps=12)
    assert straight.fingerprint == again.fingerprint

    # Kill a run after step 6 (it saves every step), then resume it to step 12.
    calls = {"n": 0}
    real_sample = FramePool.sample_with_source

    def sample_then_die(self, rng, batch_size):
        calls["n"] += 1
        if calls["n"] > 2 + 6:  # two fixed sets (sample grid, latent scale), then six training batches
            raise KeyboardInterrupt
        return real_sample(self, rng, batch_size)

    monkeypatch.setattr(FramePool, "sample_with_source", sample_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_tiny(data, tmp_path / "resumed", "continuous", steps=12, checkpoint_minutes=0.0)
    monkeypatch.setattr(FramePool, "sample_with_source", real_sample)
    assert json.loads((tmp_path / "resumed" / "training_state" / "state.json").read_text())["step"] == 6
    resumed = train_tiny(data, tmp_path / "resumed", "continuous", steps=12)
    state = json.loads((tmp_path / "resumed" / "training_state" / "state.json").read_text())
    assert state["step"] == 12
    assert resumed.fingerprint == straight.fingerprint


def test_resume_rejects_other_kind(stores, tmp_path):
    data = [s.root for s in stores]
    train_tiny(data, tmp_path / "run", "discrete", steps=2)
    with pytest.raises(ConfigError, match="holds a discrete tokenizer"):
        train_tiny(data, tmp_path / "run", "continuous", steps=2)


def test_corrupt_or_truncated_checkpoint_names_the_file(trained, tmp_path):
    import shutil

    src = trained["discrete"]
    run = tmp_path / "copy"
    shutil.copytree(src, run)
    weights = run / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_tokenizer(run)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_tokenizer(run)
    weights.write_bytes(data)
    (run / "config.json").write_text('{"format": "hma-tokenizer", "vers')
    with pytest.raises(CheckpointError, match="config.json"):
        load_tokenizer(run)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")


def test_foreground_weight_counts_the_pixels_that_differ_from_the_background(tmp_path):
    from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter
    from hma.tokenizer.modeling import reconstruction_loss
    from hma.train.tokenizer import _foreground_weight

    # A fixed grey background and a white 4x4 square at a new place in every frame.
    rng = np.random.default_rng(0)
    frames = np.full((20, 16, 16, 3), 90, dtype=np.uint8)
    for t in range(20):
        y, x = rng.integers(0, 12, 2)
        frames[t, y : y + 4, x : x + 4] = 255
    info = DatasetInfo(embodiment="sq", simulator="synthetic", action_names=["a"], control_hz=10.0, image_size=(16, 16))
    with StoreWriter(tmp_path / "sq", info) as w:
        w.add_episode(frames, np.zeros((20, 1), np.float32))
    pool = FramePool([EpisodeStore(tmp_path / "sq")])
    background = pool.backgrounds()
    assert (background == 90).all()  # the square is rarely at any one pixel: the median is the background
    config = TokenizerConfig(kind="discrete", image_size=(16, 16), downsample=4, foreground_weight=5.0)
    weight = _foreground_weight(frames[:3], background[[0, 0, 0]], config, torch.device("cpu"))
    assert weight.shape == (3, 1, 16, 16)
    np.testing.assert_array_equal(weight[:, 0].numpy() == 5.0, frames[:3, :, :, 0] == 255)
    # Uniform weights are the plain loss; the weights move the loss towards the foreground's error.
    x = torch.rand(3, 3, 16, 16)
    recon = x.clone()
    recon[:, :, :8] += 0.5  # wrong only in the top half
    plain = reconstruction_loss(recon, x, config)
    assert float(reconstruction_loss(recon, x, config, pixel_weight=torch.ones(3, 1, 16, 16))) == pytest.approx(float(plain))
    top = torch.ones(3, 1, 16, 16)
    top[:, :, :8] = 5.0
    assert float(reconstruction_loss(recon, x, config, pixel_weight=top)) > float(plain)
    with pytest.raises(ConfigError, match="foreground weight"):
        TokenizerConfig(foreground_weight=0.5)


def test_training_logs_to_tensorboard_beside_its_jsonl(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = trained["discrete"]
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/psnr")] == [r["step"] for r in logged]
    assert events.Scalars("train/loss")[-1].value == pytest.approx(logged[-1]["loss"], rel=1e-5)
    assert "train/code_usage" in events.Tags()["scalars"]
    assert "samples/original_over_reconstruction" in events.Tags()["images"]
