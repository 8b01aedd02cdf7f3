"""Training of hma's image tokenizers: ``hma tokenizer train``.

The tokenizer trains on :func:`hma.train.fit.fit` like every model of hma: resumable from
its folder, which holds ``model.safetensors`` + ``config.json`` (the tokenizer, loadable
while it trains) and ``training_state/`` (:mod:`hma.train.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from einops import rearrange

from hma.config import TokenKind
from hma.data.store import open_datasets
from hma.device import resolve_device
from hma.errors import ConfigError
from hma.tokenizer.config import TokenizerConfig
from hma.tokenizer.frames import FramePool
from hma.tokenizer.modeling import ConvAutoencoder, reconstruction_loss
from hma.tokenizer.protocol import frames_to_unit
from hma.tokenizer.conv import ConvTokenizer, load_trained_tokenizer, weights_bytes
from hma.train import checkpoint as ckpt
from hma.train.fit import TrainLog, fit
from hma.train.state import Budget, TrainState

SAMPLES_DIR = "samples"
LOG_FILE = "log.jsonl"
FOREGROUND_THRESHOLD = 8  # of 255: a pixel this far from its background (any channel) is foreground


@dataclass
class TrainOptions:
    """How long and how to train; the architecture lives in :class:`TokenizerConfig`."""

    steps: int | None = None
    minutes: float | None = None
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 50  # short: on a shared CPU a 30-minute run is only a few hundred steps
    seed: int = 0
    sample_every: int = 500  # steps between reconstruction grids in OUT/samples/
    log_every: int = 50  # steps between log lines (and code-usage windows)
    checkpoint_minutes: float = 2.0
    scale_frames: int = 512  # training frames used to measure the latent scale

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            self.steps = 2000
        if self.steps is not None and self.minutes is not None:
            raise ConfigError(f"--steps {self.steps} and --minutes {self.minutes} were both given, expected one of them")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps {self.steps} is invalid, expected a positive number of steps")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError(f"--minutes {self.minutes} is invalid, expected a positive duration")
        if self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"batch size {self.batch_size} / learning rate {self.lr} are invalid, expected positive values")


# -- helpers ---------------------------------------------------------------------------
@torch.no_grad()
def measure_latent_scale(model: ConvAutoencoder, frames: np.ndarray, *, batch_size: int = 128) -> float:
    """1 / std of the latent means over ``frames``, so scaled latents have unit variance (as in latent diffusion)."""
    p = next(model.parameters())
    means = []
    for i in range(0, len(frames), batch_size):
        x = frames_to_unit(frames[i : i + batch_size], image_size=model.config.image_size, device=p.device, dtype=p.dtype)
        means.append(model.encode_moments(x)[0].float().flatten())
    std = torch.cat(means).std().item()
    return 1.0 / max(std, 1e-6)


@torch.no_grad()
def write_sample_grid(model: ConvAutoencoder, frames: np.ndarray, path: Path) -> np.ndarray:
    """PNG: originals on the top row, reconstructions below (through the actual tokens); returns the grid."""
    import imageio.v3 as iio

    tok = ConvTokenizer(model)
    was_training = model.training
    recon = tok.decode(tok.encode(frames)).cpu().numpy()  # (B, H, W, 3)
    model.train(was_training)
    grid = rearrange(np.stack([frames, recon]), "r b h w c -> (r h) (b w) c")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    iio.imwrite(tmp, grid)
    tmp.replace(path)
    return grid


def _foreground_weight(frames: np.ndarray, backgrounds: np.ndarray, config: TokenizerConfig,
                       device: torch.device) -> torch.Tensor:
    """(B, 1, H, W): ``config.foreground_weight`` where a frame (B, H, W, 3) differs from its background, else 1."""
    differs = np.abs(frames.astype(np.int16) - backgrounds).max(axis=-1) > FOREGROUND_THRESHOLD  # (B, H, W)
    weight = 1.0 + (config.foreground_weight - 1.0) * differs.astype(np.float32)
    return torch.from_numpy(weight[:, None]).to(device)


def _code_usage(counts: torch.Tensor) -> tuple[float, float]:
    """(fraction of codes used, perplexity = exp(entropy of the code histogram))."""
    total = counts.sum().clamp_min(1)
    p = counts.double() / total
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return (counts > 0).float().mean().item(), math.exp(entropy)


# -- the loop ----------------------------------------------------------------------------
def train_tokenizer(
    data: Sequence[str | Path],
    out: str | Path,
    config: TokenizerConfig,
    options: TrainOptions,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
) -> ConvTokenizer:
    """Train (or resume) a tokenizer on the training episodes of ``data``; returns it loaded from ``out``.

    ``device``: :func:`hma.device.resolve_device` (default the GPU when there is one, else the CPU);
    ``report`` gets a timed run's closing line: how its budget ended (:meth:`Budget.summary`)."""
    device = resolve_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pool = FramePool(open_datasets(data))
    ckpt.finish_interrupted(out)
    resuming = (out / ckpt.STATE_DIR / ckpt.STATE_FILE).is_file()
    config, model = _saved_or_new_model(out, config, pool, seed=options.seed, resuming=resuming)
    model.to(device).train()
    state = _train_state(model, options, device)
    if resuming:
        state.restore(ckpt.state_tensors(out, str(device)), ckpt.read_training_state(out, config_step=False),
                      where=str(out / ckpt.STATE_DIR))
    budget = Budget(steps=options.steps, minutes=options.minutes)
    steps = _TokenizerSteps(model, config, pool, options, state=state, budget=budget, out=out, device=device)
    fit(state, steps.loss, budget, log=steps.log, log_every=options.log_every, on_log=[steps.add_usage],
        postfix=lambda record, bar: {k: f"{v:.4g}" for k, v in record.items() if k != "elapsed_s"},
        hooks=[(options.sample_every, steps.sample)], save=steps.save, save_minutes=options.checkpoint_minutes,
        progress=progress, desc=f"train {config.kind} tokenizer")
    steps.sample(state.step)
    steps.log.close()
    if report is not None and (line := budget.summary()) is not None:
        report(line)
    return load_trained_tokenizer(out).to(device)


def _saved_or_new_model(out: Path, config: TokenizerConfig, pool: FramePool, *, seed: int,
                        resuming: bool) -> tuple[TokenizerConfig, ConvAutoencoder]:
    """The tokenizer in ``out`` when resuming (its own config, of the asked kind), else a new one
    for ``pool``'s frame size; either way it must match the frames of ``pool``."""
    if resuming:
        saved = load_trained_tokenizer(out)
        if saved.config.kind != config.kind:
            raise ConfigError(f"{out} holds a {saved.config.kind} tokenizer, but --kind {config.kind} was asked; use another --out")
        config = saved.config
        model = saved.model
    else:
        config = dataclasses.replace(config, image_size=pool.image_size)  # re-validated against the frames
        torch.manual_seed(seed)  # weight init draws from the default generator
        model = ConvAutoencoder(config)
    if tuple(config.image_size) != pool.image_size:
        raise ConfigError(f"datasets have {list(pool.image_size)} frames but the tokenizer in {out} expects {list(config.image_size)}")
    return config, model


def _train_state(model: ConvAutoencoder, options: TrainOptions, device: torch.device) -> TrainState:
    """AdamW with warmup, and the seeded generators of the frame order ("frames") and the latent noise ("noise")."""
    rng = np.random.default_rng(options.seed)
    gen = torch.Generator(device=device).manual_seed(options.seed)
    return TrainState(model, torch.optim.AdamW(model.parameters(), lr=options.lr, betas=(0.9, 0.99), weight_decay=0.0),
                      warmup=options.warmup_steps, total_steps=options.steps, generators={"noise": gen},
                      numpy_rngs={"frames": rng})


class _TokenizerSteps:
    """What :func:`fit` calls while a tokenizer trains: the loss of a batch, code usage for the
    log, reconstruction grids and checkpoints."""

    def __init__(self, model: ConvAutoencoder, config: TokenizerConfig, pool: FramePool, options: TrainOptions, *,
                 state: TrainState, budget: Budget, out: Path, device: torch.device) -> None:
        self.model, self.config, self.pool, self.options = model, config, pool, options
        self.state, self.budget, self.out, self.device = state, budget, out, device
        self.rng, self.gen = state.numpy_rngs["frames"], state.generators["noise"]
        self.backgrounds = pool.backgrounds(seed=options.seed) if config.foreground_weight > 1 else None
        self.sample_frames = pool.fixed(8, seed=options.seed)
        self.scale_frames = pool.fixed(options.scale_frames, seed=options.seed + 1)
        self.usage_counts = torch.zeros(config.vocab_size if config.kind == TokenKind.DISCRETE else 1, dtype=torch.long,
                                        device=device)
        self.log = TrainLog(out, jsonl=out / LOG_FILE)  # RUN/tb and RUN/log.jsonl, as the world model's

    def loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        config = self.config
        frames, source = self.pool.sample_with_source(self.rng, self.options.batch_size)
        x = frames_to_unit(frames, image_size=config.image_size, device=self.device, dtype=torch.float32)
        result = self.model(x, generator=self.gen)
        weight = None if self.backgrounds is None else _foreground_weight(frames, self.backgrounds[source], config,
                                                                          self.device)
        recon_loss = reconstruction_loss(result.recon, x, config, pixel_weight=weight)
        loss = recon_loss + (config.kl_weight * result.aux_loss if config.kind == TokenKind.CONTINUOUS else 0.0)
        if result.ids is not None:
            self.usage_counts.add_(torch.bincount(result.ids.flatten(), minlength=config.vocab_size))
        mse = torch.mean((result.recon.detach().clamp(-1, 1) - x) ** 2).item() / 4.0  # in [0, 1] units
        metrics = {"loss": recon_loss.item(), "psnr": -10 * math.log10(max(mse, 1e-10))}
        if config.kind == TokenKind.CONTINUOUS:
            metrics["kl"] = result.aux_loss.item()
        return loss, metrics

    def add_usage(self, step: int, record: dict) -> None:
        record["elapsed_s"] = round(self.budget.elapsed_s, 1)
        if self.config.kind == TokenKind.DISCRETE:
            record["code_usage"], record["perplexity"] = _code_usage(self.usage_counts)
            self.usage_counts.zero_()

    def sample(self, step: int) -> None:
        grid = write_sample_grid(self.model, self.sample_frames, self.out / SAMPLES_DIR / f"step_{step:07d}.png")
        self.log.writer.add_image("samples/original_over_reconstruction", grid, step, dataformats="HWC")

    def save(self) -> None:
        if self.config.kind == TokenKind.CONTINUOUS:
            self.model.eval()
            self.config.latent_scale = measure_latent_scale(self.model, self.scale_frames)
            self.model.train()
        tensors, meta = self.state.files()
        ckpt.write_checkpoint(self.out, weights=weights_bytes(self.model), config=self.model.config.to_json(),
                              tensors=tensors, state={**meta, "options": dataclasses.asdict(self.options)},
                              config_checksum=False)
