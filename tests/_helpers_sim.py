"""A tiny world-model run (random weights) and a procedural dataset for the sim/apps tests.

The model and tokenizer are the real hma classes at toy sizes, so every code path of the
env is exercised; only the weights are untrained (a few ms per generated frame).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from hma.config import EmbodimentSpec, preset
from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter
from hma.model import WorldModel
from hma.tokenizer.config import TokenizerConfig
from hma.tokenizer.modeling import ConvAutoencoder
from hma.tokenizer.trained import ConvTokenizer

IMAGE = 32
EMBODIMENT = "toy"
CHUNK = 2  # control steps per model frame: 20 Hz control, 10 Hz frames


def make_store(root: Path, *, episodes: int = 6, length: int = 24, seed: int = 0) -> EpisodeStore:
    """A square that the 2-D actions push around; success when it is in the right half."""
    rng = np.random.default_rng(seed)
    info = DatasetInfo(embodiment=EMBODIMENT, simulator="procedural", action_names=["dx", "dy"],
                       control_hz=20.0, image_size=(IMAGE, IMAGE), task="push the square right")
    writer = StoreWriter(root, info)
    for _ in range(episodes):
        pos = rng.uniform(4, IMAGE - 12, size=2)
        actions = rng.uniform(-2, 2, size=(length, 2)).astype(np.float32)
        frames = np.zeros((length, IMAGE, IMAGE, 3), np.uint8)
        success = np.zeros(length, bool)
        for t in range(length):
            x, y = pos.astype(int)
            frames[t, y : y + 8, x : x + 8] = (230, 60, 40)
            success[t] = x > IMAGE // 2
            pos = np.clip(pos + actions[t], 0, IMAGE - 8)
        writer.add_episode(frames, actions, success)
    return writer.finalize()


def make_run(store: EpisodeStore, *, seed: int = 0, responsive: bool = True) -> SimpleNamespace:
    """An object with the attributes of ``hma.load``'s result, holding an untrained tiny model."""
    torch.manual_seed(seed)
    tok = ConvTokenizer(ConvAutoencoder(TokenizerConfig(kind="discrete", name="toy", image_size=(IMAGE, IMAGE),
                                                        downsample=8, channels=(8, 16, 16), num_res_blocks=1,
                                                        vocab_size=256)))
    stats = store.action_stats
    spec = EmbodimentSpec(name=EMBODIMENT, action_dim=2, chunk=CHUNK, mean=np.tile(stats["mean"], CHUNK).tolist(),
                          std=np.tile(stats["std"], CHUNK).tolist(), action_names=["dx", "dy"], control_hz=20.0)
    config = preset("tiny", num_blocks=2, width=32, num_heads=2, grid=tok.grid, num_frames=4, vocab_size=tok.vocab_size,
                    frame_hz=10.0, embodiments={EMBODIMENT: spec})
    model = WorldModel(config).eval()
    if responsive:
        # adaLN-Zero starts every block unmodulated, so an untrained model ignores actions;
        # random modulation weights make its frames depend on them, as a trained model's do.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "adaln" in name or name.startswith("stems."):
                    p.normal_(0.0, 0.5)
    return SimpleNamespace(model=model, tokenizer=tok, embodiments=config.embodiments, datasets={EMBODIMENT: str(store.root)})
