"""Tiny tokenized datasets and tiny model settings for the model and training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hma.config import EmbodimentSpec, ModelConfig, preset
from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter
from hma.tokenizer import load_tokenizer, tokenize_dataset
from hma.tokenizer.config import TokenizerConfig
from hma.tokenizer.modeling import ConvAutoencoder
from hma.tokenizer.conv import save_tokenizer

# Smaller than the `tiny` preset: a 1-block trunk trains in well under a second per step.
TINY = dict(num_blocks=2, width=32, num_heads=2, num_frames=4, diffusion_width=32, diffusion_blocks=1)


def tiny_model_config(kind: str = "discrete", *, embodiments: dict[str, int] | None = None, **changes) -> ModelConfig:
    """A model over 4x4 token grids; ``embodiments`` maps name -> action values per frame."""
    specs = {name: EmbodimentSpec(name, dim, 1, [0.0] * dim, [1.0] * dim)
             for name, dim in (embodiments or {"arm": 3}).items()}
    fields = {**TINY, "kind": kind, "grid": (4, 4), "vocab_size": 64, "latent_channels": 3, "embodiments": specs,
              "corrupt_max": 0.0}
    return preset("tiny", **{**fields, **changes})


def make_tokenizer(out: Path, kind: str = "discrete", *, name: str = "tok", seed: int = 0) -> Path:
    """An untrained (random-weight) 16x16 -> 4x4 tokenizer folder: enough to make token shards."""
    import torch

    torch.manual_seed(seed)
    config = TokenizerConfig(kind=kind, name=name, image_size=(16, 16), downsample=4, channels=(8, 8),
                             num_res_blocks=1, fsq_levels=(4, 4, 4), latent_channels=3)
    save_tokenizer(ConvAutoencoder(config), out)
    return out


def make_dataset(root: Path, *, embodiment: str, action_dim: int, episodes: int = 5, length: int = 20,
                 seed: int = 0, state: tuple[str, str] | None = None) -> Path:
    """A moving-square dataset whose motion follows the actions (so actions are learnable);
    with ``state`` (two names) it records the square's position as the state."""
    rng = np.random.default_rng(seed)
    info = DatasetInfo(embodiment=embodiment, simulator="synthetic", action_names=[f"a{i}" for i in range(action_dim)],
                       control_hz=10.0, image_size=(16, 16), state_names=list(state or []))
    w = StoreWriter(root, info)
    for _ in range(episodes):
        actions = rng.integers(-2, 3, size=(length, action_dim)).astype(np.float32)
        pos = rng.integers(0, 12, size=2)
        frames = np.zeros((length, 16, 16, 3), dtype=np.uint8)
        positions = np.zeros((length, 2), dtype=np.float32)
        for t in range(length):
            frames[t, pos[1] : pos[1] + 4, pos[0] : pos[0] + 4] = 255
            positions[t] = pos
            pos = np.clip(pos + actions[t, :2].astype(int), 0, 12)
        w.add_episode(frames, actions, state=positions if state else None)
    w.finalize()
    return root


def make_tokenized(tmp: Path, *, kind: str = "discrete", embodiments: dict[str, int] | None = None,
                   tokenizer_name: str = "tok", seed: int = 0, length: int = 20,
                   episodes: int = 5) -> tuple[list[Path], Path]:
    """Datasets (one per embodiment) tokenized with a fresh tokenizer: (dataset dirs, tokenizer dir)."""
    tok_dir = make_tokenizer(tmp / f"tokenizer_{tokenizer_name}", kind, name=tokenizer_name, seed=seed)
    tokenizer = load_tokenizer(tok_dir)
    dirs = []
    for i, (name, dim) in enumerate((embodiments or {"arm": 2}).items()):
        d = make_dataset(tmp / "data" / name, embodiment=name, action_dim=dim, seed=seed + i, length=length,
                         episodes=episodes)
        tokenize_dataset(EpisodeStore(d), tokenizer, progress=False)
        dirs.append(d)
    return dirs, tok_dir

