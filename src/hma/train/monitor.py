"""What a training run shows while it trains: held-out metrics and a sample video, every
``eval_every`` steps, in TensorBoard (``RUN/tb``) and as GIFs (``RUN/samples/step_N.gif``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SAMPLES_DIR = "samples"
MONITOR_WINDOWS = 64  # held-out windows per periodic evaluation: a second or two on a CPU


@torch.inference_mode()
def sample_video(model: nn.Module, tokenizer: Any, data: Any, *, seed: int) -> np.ndarray | None:
    """One held-out window: real frames beside the model's, generated autoregressively after
    the first half under the window's true actions; uint8 (T, H, 2W, 3), None without held-out data."""
    from hma.train.data import to_tensors
    from hma.sampling.engine import Engine

    ds = next((d for d in data.heldout if len(d)), None)
    if ds is None:
        return None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batch = to_tensors(ds.get_batch(np.array([0])), device)
    tokens, actions = batch["frames"], batch["actions"]  # (1, T, ...), (1, T, k*A)
    context = max(1, tokens.shape[1] // 2)
    engine = Engine(model, embodiment=ds.embodiment)
    generator = torch.Generator(device=device).manual_seed(seed)
    engine.reset(tokens[:, :context], actions[:, : context - 1])
    generated = [engine.step(actions[:, t - 1], generator) for t in range(context, tokens.shape[1])]
    model.train(was_training)
    fake = torch.cat([tokens[:, :context], torch.stack(generated, dim=1)], dim=1)[0]  # (T, ...)
    real = tokenizer.decode(tokens[0]).cpu().numpy()  # (T, H, W, 3)
    made = tokenizer.decode(fake).cpu().numpy()
    return np.concatenate([real, made], axis=2)


def log_progress(writer: Any, run: Path, model: nn.Module, tokenizer: Any, data: Any, *, step: int, batch_size: int,
                 seed: int, evaluate: Any) -> dict[str, Any]:
    """Held-out metrics (``heldout/*`` scalars) and a sample video (an image strip and a GIF)."""
    import imageio.v3 as iio

    from hma.io import atomic_write_bytes

    metrics = evaluate(model, data, batch_size=batch_size, max_windows=MONITOR_WINDOWS, seed=seed)
    for key, value in metrics.items():
        if key != "heldout_windows" and isinstance(value, (int, float)):
            writer.add_scalar(f"heldout/{key}", value, step)
    video = sample_video(model, tokenizer, data, seed=seed)
    if video is not None:
        writer.add_image("samples/real_vs_generated", np.concatenate(list(video), axis=0), step, dataformats="HWC")
        gif = iio.imwrite("<bytes>", video, extension=".gif", duration=200, loop=0)
        atomic_write_bytes(run / SAMPLES_DIR / f"step_{step:07d}.gif", gif)
    writer.flush()
    return metrics
