"""Training loop of hma's tokenizers: ``hma tokenizer train``.

Resumable: the run folder holds ``model.safetensors`` + ``config.json`` (the tokenizer)
and ``training_state/`` (optimizer moments in safetensors; step, elapsed time and RNG
states in JSON). A save is a two-phase commit so that a kill at any moment leaves a
consistent pair: the new state goes to ``training_state.partial/`` (recording the sha256
of the weights it belongs to), then the weights are replaced atomically, then the state
folder is swapped in. A later run finishes or discards a half-done swap by that sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from einops import rearrange
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import save as save_safetensors_bytes

from hma.config import TokenKind
from hma.data.store import open_datasets
from hma.progress import bar as progress_bar
from hma.errors import CheckpointError, ConfigError
from hma.io import atomic_write_bytes, atomic_write_json, seal, sha256_file
from hma.tokenizer.config import TokenizerConfig
from hma.tokenizer.frames import FramePool
from hma.tokenizer.modeling import ConvAutoencoder, reconstruction_loss
from hma.tokenizer.protocol import frames_to_unit
from hma.tokenizer.trained import CONFIG_FILE, WEIGHTS_FILE, ConvTokenizer, load_trained_tokenizer, weights_bytes

TRAINING_STATE_DIR = "training_state"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
SAMPLES_DIR = "samples"
LOG_FILE = "log.jsonl"
TB_DIR = "tb"
FOREGROUND_THRESHOLD = 8  # of 255: a pixel this far from its background (any channel) is foreground
_PARTIAL = TRAINING_STATE_DIR + ".partial"
_OLD = TRAINING_STATE_DIR + ".old"


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
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps {self.steps} is invalid, expected a positive number of steps")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError(f"--minutes {self.minutes} is invalid, expected a positive duration")
        if self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"batch size {self.batch_size} / learning rate {self.lr} are invalid, expected positive values")


def lr_factor(step: int, progress: float, warmup_steps: int) -> float:
    """Linear warmup, then cosine decay to 10% over the step or time budget (``progress`` in [0, 1])."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# -- optimizer and RNG state <-> safetensors / JSON --------------------------------------------
def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = opt.state_dict()
    tensors = {f"{i}.{k}": v.detach().contiguous().cpu() for i, s in sd["state"].items() for k, v in s.items()}
    return tensors, sd["param_groups"]


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def _finish_pending_save(out: Path) -> None:
    """Complete or discard a save that was killed midway (see the module docstring)."""
    partial, final, old = out / _PARTIAL, out / TRAINING_STATE_DIR, out / _OLD
    weights = out / WEIGHTS_FILE
    if (partial / STATE_FILE).is_file() and weights.is_file():
        try:
            pending = json.loads((partial / STATE_FILE).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            pending = {}  # an unfinished state is discarded below
        if pending.get("model_sha256") == sha256_file(weights):
            if final.exists():
                shutil.rmtree(old, ignore_errors=True)
                final.rename(old)
            partial.rename(final)
    shutil.rmtree(partial, ignore_errors=True)
    if not final.exists() and old.exists():
        old.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _save(out: Path, model: ConvAutoencoder, opt: torch.optim.Optimizer, state: dict) -> None:
    data = weights_bytes(model)
    partial = out / _PARTIAL
    shutil.rmtree(partial, ignore_errors=True)
    tensors, groups = _optimizer_tensors(opt)
    atomic_write_bytes(partial / OPTIMIZER_FILE, save_safetensors_bytes(tensors))
    atomic_write_json(partial / STATE_FILE, {**state, "param_groups": groups, "model_sha256": hashlib.sha256(data).hexdigest()})
    atomic_write_bytes(out / WEIGHTS_FILE, data)
    atomic_write_json(out / CONFIG_FILE, seal(model.config.to_json()))
    _finish_pending_save(out)


def _generator_state(g: torch.Generator) -> list[int]:
    return g.get_state().tolist()


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
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> ConvTokenizer:
    """Train (or resume) a tokenizer on the training episodes of ``data``; returns it loaded from ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    pool = FramePool(open_datasets(data))
    _finish_pending_save(out)
    resuming = (out / TRAINING_STATE_DIR / STATE_FILE).is_file()
    if resuming:
        saved = load_trained_tokenizer(out)
        if saved.config.kind != config.kind:
            raise ConfigError(f"{out} holds a {saved.config.kind} tokenizer, but --kind {config.kind} was asked; use another --out")
        config = saved.config
        model = saved.model
    else:
        config = dataclasses.replace(config, image_size=pool.image_size)  # re-validated against the frames
        torch.manual_seed(options.seed)  # weight init draws from the default generator
        model = ConvAutoencoder(config)
    if tuple(config.image_size) != pool.image_size:
        raise ConfigError(f"datasets have {list(pool.image_size)} frames but the tokenizer in {out} expects {list(config.image_size)}")
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=options.lr, betas=(0.9, 0.99), weight_decay=0.0)
    rng = np.random.default_rng(options.seed)
    gen = torch.Generator(device=device).manual_seed(options.seed)
    step, elapsed = 0, 0.0
    if resuming:
        state_dir = out / TRAINING_STATE_DIR
        try:
            state = json.loads((state_dir / STATE_FILE).read_text())
            step, elapsed = int(state["step"]), float(state["elapsed_s"])
            rng.bit_generator.state = state["numpy_rng"]
            gen.set_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{state_dir / STATE_FILE} cannot be read ({type(e).__name__}: {e}): the training state is corrupt") from None
        try:
            _load_optimizer(opt, load_safetensors_file(state_dir / OPTIMIZER_FILE, device=str(device)), state["param_groups"])
        except Exception as e:  # safetensors and load_state_dict raise several types for a damaged file
            raise CheckpointError(f"{state_dir / OPTIMIZER_FILE} cannot be read ({e}): the training state is corrupt") from None

    backgrounds = pool.backgrounds(seed=options.seed) if config.foreground_weight > 1 else None
    sample_frames = pool.fixed(8, seed=options.seed)
    scale_frames = pool.fixed(options.scale_frames, seed=options.seed + 1)
    budget_s = None if options.minutes is None else options.minutes * 60.0
    usage_counts = torch.zeros(config.vocab_size if config.kind == TokenKind.DISCRETE else 1, dtype=torch.long, device=device)

    def done() -> bool:
        return (options.steps is not None and step >= options.steps) or (budget_s is not None and elapsed >= budget_s)

    def save() -> None:
        if config.kind == TokenKind.CONTINUOUS:
            model.eval()
            config.latent_scale = measure_latent_scale(model, scale_frames)
            model.train()
        _save(out, model, opt, {
            "step": step, "elapsed_s": elapsed, "options": dataclasses.asdict(options),
            "numpy_rng": rng.bit_generator.state, "torch_rng": _generator_state(gen),
        })

    total = options.steps if options.steps is not None else None
    bar = progress_bar(total=total, initial=step, show=progress, desc=f"train {config.kind} tokenizer", unit="step", dynamic_ncols=True)
    last_save = time.monotonic()
    log_path = out / LOG_FILE
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / TB_DIR))  # beside log.jsonl, as the world model's RUN/tb
    window_loss: list[float] = []
    while not done():
        t0 = time.monotonic()
        progress_frac = max(step / options.steps if options.steps else 0.0, elapsed / budget_s if budget_s else 0.0)
        for g in opt.param_groups:
            g["lr"] = options.lr * lr_factor(step, progress_frac, options.warmup_steps)
        frames, source = pool.sample_with_source(rng, options.batch_size)
        x = frames_to_unit(frames, image_size=config.image_size, device=device, dtype=torch.float32)
        result = model(x, generator=gen)
        weight = None if backgrounds is None else _foreground_weight(frames, backgrounds[source], config, device)
        recon_loss = reconstruction_loss(result.recon, x, config, pixel_weight=weight)
        loss = recon_loss + (config.kl_weight * result.aux_loss if config.kind == TokenKind.CONTINUOUS else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        elapsed += time.monotonic() - t0
        window_loss.append(recon_loss.item())
        if result.ids is not None:
            usage_counts += torch.bincount(result.ids.flatten(), minlength=config.vocab_size)
        if step % options.log_every == 0 or done():
            mse = torch.mean((result.recon.detach().clamp(-1, 1) - x) ** 2).item() / 4.0  # in [0, 1] units
            record = {"step": step, "elapsed_s": round(elapsed, 1), "loss": float(np.mean(window_loss)),
                      "psnr": -10 * math.log10(max(mse, 1e-10)), "lr": opt.param_groups[0]["lr"]}
            if config.kind == TokenKind.DISCRETE:
                record["code_usage"], record["perplexity"] = _code_usage(usage_counts)
                usage_counts.zero_()
            else:
                record["kl"] = result.aux_loss.item()
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            for key, value in record.items():
                if key != "step":
                    writer.add_scalar(f"train/{key}", value, step)
            bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k not in ("step", "elapsed_s")})
            window_loss.clear()
        if step % options.sample_every == 0:
            grid = write_sample_grid(model, sample_frames, out / SAMPLES_DIR / f"step_{step:07d}.png")
            writer.add_image("samples/original_over_reconstruction", grid, step, dataformats="HWC")
        if time.monotonic() - last_save >= options.checkpoint_minutes * 60:
            save()
            last_save = time.monotonic()
        bar.update(1)
    bar.close()
    save()
    grid = write_sample_grid(model, sample_frames, out / SAMPLES_DIR / f"step_{step:07d}.png")
    writer.add_image("samples/original_over_reconstruction", grid, step, dataformats="HWC")
    writer.close()
    return load_trained_tokenizer(out).to(device)
