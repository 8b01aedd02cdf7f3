"""Evaluation of a trained run on held-out episodes: ``hma eval`` and :func:`evaluate`.

For every embodiment the run knows, the held-out episodes (the same split as training,
:func:`hma.data.windows.split_episodes` with the run's ``holdout``) are cut into clips of
``context + horizon`` frames at the model's frame rate. Each clip is generated in up to
two modes (paper sec. 5):

- **teacher-forced**: every future frame is predicted from the *true* past frames (the
  last ``window - 1`` of them) and the true action that led to it;
- **autoregressive**: the model is rolled out from the context frames with the true
  actions, each generated frame becoming the past of the next.

Both are scored in pixel space against the real frames (PSNR, SSIM, LPIPS/FID/FVD when
their weights are present) and for controllability (delta-PSNR: true actions minus the
mean over ``random_draws`` draws of random actions from the embodiment's action
distribution, all with the same sampling noise so only the actions differ). Discrete runs
also get the held-out perplexity of masked tokens. Generation speed (frames per second,
decoding excluded) comes from the autoregressive rollout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from hma.config import Setting
from hma.data.store import EpisodeStore, open_datasets
from hma.data.windows import WindowDataset, split_episodes
from hma.errors import ConfigError, DataError
from hma.eval import metrics as M
from hma.io import atomic_write_json

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PSNR_PLOT_FILE = "psnr_vs_horizon.png"
VIDEO_DIR = "videos"
PSNR_CAP_DB = 100.0  # a frame reproduced exactly counts as 100 dB instead of +inf (keeps means finite)
HEADLINE_KEYS = ("psnr", "ssim", "delta_psnr", "lpips", "fid", "fvd")


class EvalMode(str, Enum):
    TEACHER_FORCED = "teacher-forced"
    AUTOREGRESSIVE = "autoregressive"
    BOTH = "both"

    @classmethod
    def parse(cls, text: str | "EvalMode") -> "EvalMode":
        try:
            return cls(text)
        except ValueError:
            raise ConfigError(f"evaluation mode {text!r} is unknown, expected teacher-forced, autoregressive or both") from None

    @property
    def modes(self) -> list["EvalMode"]:
        return [EvalMode.TEACHER_FORCED, EvalMode.AUTOREGRESSIVE] if self is EvalMode.BOTH else [self]


@dataclass(frozen=True)
class EvalOptions:
    """What :func:`evaluate` measures; recorded in ``metrics.json``."""

    horizon: int | None = None  # generated frames per clip (default: the model's window - 1)
    context: int = 2  # true frames a clip starts from
    mode: EvalMode = EvalMode.BOTH
    episodes: int | None = None  # held-out episodes per embodiment (default: all)
    random_draws: int = M.MIN_RANDOM_DRAWS
    unmask_steps: int = 2  # MaskGIT/MAR steps per frame (the reference evaluates with 2)
    temperature: float = 0.0  # 0 = greedy tokens: the highest-likelihood frame, what PSNR rewards
    diffusion_steps: int | None = None  # MAR head / diffusion baseline DDIM steps (default: the model's)
    batch_size: int = 16  # clips generated together
    perplexity_windows: int = 64  # held-out windows per embodiment for the perplexity
    seed: int = 0
    precision: str = "fp32"  # of generation (hma.sampling.precision); teacher-forced perplexity stays fp32

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", EvalMode.parse(self.mode))
        if self.horizon is not None and self.horizon < 1:
            raise ConfigError(f"horizon {self.horizon} is invalid; expected at least 1 generated frame")
        if self.context < 1:
            raise ConfigError(f"context {self.context} is invalid; expected at least 1 true frame")
        from hma.sampling.precision import Precision

        object.__setattr__(self, "precision", Precision.parse(self.precision).value)
        if self.random_draws < M.MIN_RANDOM_DRAWS:
            raise ConfigError(f"random draws {self.random_draws} is too few; expected at least {M.MIN_RANDOM_DRAWS}")
        if self.episodes is not None and self.episodes < 1:
            raise ConfigError(f"episodes {self.episodes} is invalid; expected at least 1 held-out episode")
        if self.batch_size < 1:
            raise ConfigError(f"batch size {self.batch_size} is invalid; expected at least 1")


# -- generators: one interface over the world model's engine and the diffusion baseline --

class _HiddenActions:
    """A world model seen with every action hidden, as a passive-video run was trained.

    A run trained in the ``video`` setting never saw its action stems used (all actions were
    replaced by the learned "hidden" embedding), so feeding it actions at evaluation would
    test an untrained stem. This view routes the engine's calls to the model with
    ``action=None`` (= hidden) and passes everything else through.
    """

    def __init__(self, model) -> None:
        self._model = model

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def forward_frame(self, frame_tokens, action_prev, **kwargs):
        return self._model.forward_frame(frame_tokens, None, **kwargs)

    def commit_frame(self, frame_tokens, action_prev, **kwargs) -> None:
        self._model.commit_frame(frame_tokens, None, **kwargs)

    def prefill(self, tokens, actions, **kwargs) -> None:
        self._model.prefill(tokens, None, **kwargs)

    def __call__(self, tokens, actions, *, embodiment, token_mask=None, action_mask=None):
        hidden = torch.ones(actions.shape[:2], dtype=torch.bool, device=actions.device)  # (B, T)
        return self._model(tokens, actions, embodiment=embodiment, token_mask=token_mask, action_mask=hidden)


class _DiffusionGenerator:
    """The diffusion baseline behind the engine's ``reset(context, actions_between)`` / ``step``."""

    def __init__(self, model, *, embodiment: str, steps: int | None) -> None:
        from hma.baselines.diffusion import DiffusionRollout

        self.rollout = DiffusionRollout(model, embodiment=embodiment, steps=steps)

    def reset(self, context: Tensor, actions: Tensor) -> None:
        # The rollout reads actions[:, t] as taken at frame t; the last frame's comes with step().
        padded = torch.cat([actions, actions.new_zeros(actions.shape[0], 1, actions.shape[2])], dim=1)  # (B, T0, k*A)
        self.rollout.reset(context, padded)

    def step(self, action: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.rollout.step(action, generator)


def _generator(loaded, embodiment: str, opts: EvalOptions, *, passive: bool):
    kind = loaded.config.get("kind", "hma")
    if kind == "diffusion":
        return _DiffusionGenerator(loaded.model, embodiment=embodiment, steps=opts.diffusion_steps)
    from hma.sampling.engine import CacheMode, Engine
    from hma.sampling.mar import MARSampling
    from hma.sampling.maskgit import MaskGITSampling

    if loaded.config["model"]["kind"] == "discrete":
        sampling = MaskGITSampling(steps=opts.unmask_steps, temperature=opts.temperature)
    else:
        extra = {} if opts.diffusion_steps is None else {"diffusion_steps": opts.diffusion_steps}
        sampling = MARSampling(steps=opts.unmask_steps, **extra)
    model = _HiddenActions(loaded.model) if passive else loaded.model
    return Engine(model, embodiment=embodiment, mode=CacheMode.CACHED, sampling=sampling, precision=opts.precision)


def _window(loaded) -> int:
    return int(loaded.model.config.num_frames)


@torch.inference_mode()
def generate_autoregressive(gen, tokens: Tensor, actions: Tensor, context: int, *, seed: int) -> tuple[Tensor, float]:
    """Roll out from ``context`` true frames with ``actions`` (B, L, k*A): frames (B, L - context, ...), seconds."""
    generator = torch.Generator(device=tokens.device).manual_seed(seed)
    gen.reset(tokens[:, :context], actions[:, : context - 1])
    frames, started = [], time.perf_counter()
    for t in range(context, tokens.shape[1]):
        frames.append(gen.step(actions[:, t - 1], generator))  # frame t follows the action taken at t - 1
    return torch.stack(frames, dim=1), time.perf_counter() - started


@torch.inference_mode()
def generate_teacher_forced(gen, tokens: Tensor, actions: Tensor, context: int, *, window: int, seed: int) -> Tensor:
    """Predict each frame t >= ``context`` from the true frames before it (at most ``window - 1``)."""
    generator = torch.Generator(device=tokens.device).manual_seed(seed)
    frames = []
    for t in range(context, tokens.shape[1]):
        lo = max(0, t - (window - 1))
        gen.reset(tokens[:, lo:t], actions[:, lo : t - 1])
        frames.append(gen.step(actions[:, t - 1], generator))
    return torch.stack(frames, dim=1)


# -- data ---------------------------------------------------------------------------

@dataclass
class _Clips:
    frames: np.ndarray  # (B, L, H, W, 3) uint8 real frames
    actions: np.ndarray  # (B, L, k*A) normalized true actions
    episodes: list[int]


def _clips(store: EpisodeStore, spec, *, frame_hz: float, length: int, held: Sequence[int]) -> _Clips:
    """Non-overlapping clips of ``length`` frames from the held-out episodes ``held``."""
    ds = WindowDataset(store, length, frame_hz, episodes=held, normalizer=spec.normalizer)
    span = length * ds.chunk
    wanted = [s for e in held
              for s in range(int(store.episode_starts[e]), int(store.episode_starts[e + 1]) - span + 1, span)]
    if not wanted:
        longest = int(max(store.episode_starts[e + 1] - store.episode_starts[e] for e in held))
        raise DataError(
            f"{store.root}: no held-out episode fits a clip of {length} frames ({span} control steps); the longest "
            f"has {longest}, expected a shorter --horizon or --context"
        )
    batch = ds.get_batch(np.searchsorted(ds.starts, wanted))
    return _Clips(frames=np.asarray(batch["frames"]), actions=batch["actions"], episodes=list(held))


def _random_actions(store: EpisodeStore, spec, train_ids: Sequence[int], shape: tuple[int, int],
                    generator: torch.Generator) -> Tensor:
    """Normalized random action chunks (B, L, k*A): control-step rows resampled from the training episodes."""
    b, length = shape
    rows = np.concatenate([np.arange(store.episode_starts[e], store.episode_starts[e + 1]) for e in train_ids])
    raw = M.sample_random_actions(np.asarray(store.actions)[rows], (b, length * spec.chunk), generator)  # (B, L*k, A)
    chunks = rearrange(raw, "b (l k) a -> b l (k a)", k=spec.chunk)  # (B, L, k*A)
    mean = torch.as_tensor(spec.mean, dtype=chunks.dtype, device=chunks.device)
    std = torch.as_tensor(spec.std, dtype=chunks.dtype, device=chunks.device).clamp_min(1e-6)
    return (chunks - mean) / std


def _encode(tokenizer, frames_blhw3: np.ndarray, device: torch.device) -> Tensor:
    b, length = frames_blhw3.shape[:2]
    flat = rearrange(np.ascontiguousarray(frames_blhw3), "b l h w c -> (b l) h w c")
    tokens = torch.cat([tokenizer.encode(flat[i : i + 256]).to(device) for i in range(0, len(flat), 256)])
    return tokens.reshape(b, length, *tokens.shape[1:])  # (B, L, h, w) or (B, L, C, h, w)


def _decode(tokenizer, tokens: Tensor) -> np.ndarray:
    b, length = tokens.shape[:2]
    flat = tokens.reshape(b * length, *tokens.shape[2:])
    frames = torch.cat([tokenizer.decode(flat[i : i + 256]).cpu() for i in range(0, len(flat), 256)])
    return frames.reshape(b, length, *frames.shape[1:]).numpy()  # (B, L, H, W, 3) uint8


# -- metrics ------------------------------------------------------------------------

def _capped_psnr(pred: np.ndarray, target: np.ndarray) -> Tensor:
    return M.psnr(pred, target).clamp(max=PSNR_CAP_DB)  # (B, H)


class _FeatureNets:
    """LPIPS / FID / FVD networks when their weight files are configured, else the reasons they are not."""

    def __init__(self) -> None:
        from hma.eval.nets import Unavailable, load_fid_inception, load_i3d, load_lpips

        self.nets = {"lpips": load_lpips(), "fid": load_fid_inception(), "fvd": load_i3d()}
        self.notes = {k: str(v) for k, v in self.nets.items() if isinstance(v, Unavailable)}

    def scores(self, pred: np.ndarray, target: np.ndarray) -> tuple[dict[str, float | None], dict[str, str]]:
        """pred/target (B, H, h, w, 3) uint8 -> lpips/fid/fvd (None where unavailable) and notes."""
        out: dict[str, float | None] = {"lpips": None, "fid": None, "fvd": None}
        notes = dict(self.notes)
        if "lpips" not in notes:
            out["lpips"] = float(M.lpips(pred, target, self.nets["lpips"]).mean())
        if "fid" not in notes:
            n = pred.shape[0] * pred.shape[1]
            if n >= 2:
                out["fid"] = M.fid(target, pred, self.nets["fid"])
            else:
                notes["fid"] = f"FID needs at least 2 frames, got {n}"
        if "fvd" not in notes:
            if pred.shape[1] >= 9 and pred.shape[0] >= 2:
                out["fvd"] = M.fvd(target, pred, self.nets["fvd"])
            else:
                notes["fvd"] = f"FVD needs at least 2 clips of at least 9 frames, got {pred.shape[0]} of {pred.shape[1]}"
        return out, notes


def _finite_mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


@torch.inference_mode()
def heldout_perplexity(model, tokens: Tensor, actions: Tensor, *, embodiment: str, setting: Setting, seed: int,
                       batch_size: int) -> tuple[float, int]:
    """exp(mean masked-token cross-entropy) over windows tokens (N, T, h, w) with actions (N, T, k*A).

    Masks are the training ones for ``setting`` (cosine-scheduled, frame 0 visible) from a
    fixed seed, so two runs are scored on the same masked positions. Returns the
    perplexity and the number of masked tokens it was measured on.
    """
    from hma.model.objectives import sample_masks

    c = model.config
    generator = torch.Generator(device=tokens.device).manual_seed(seed)
    total_ce, total_tokens = 0.0, 0
    for i in range(0, tokens.shape[0], batch_size):
        tok, act = tokens[i : i + batch_size], actions[i : i + batch_size]  # (b, T, h, w), (b, T, k*A)
        b, t = tok.shape[:2]
        masks = sample_masks(b, t, c.tokens_per_frame, setting, generator=generator, device=tok.device)
        token_mask = rearrange(masks.tokens, "b t (h w) -> b t h w", h=c.grid[0])
        out = model(tok, act, embodiment=embodiment, token_mask=token_mask, action_mask=masks.actions)
        n = int(masks.tokens.sum())
        total_ce += float(model.token_cross_entropy(out.logits, tok, masks.tokens)) * n
        total_tokens += n
    return M.perplexity(total_ce / max(total_tokens, 1)), total_tokens


# -- the runner -----------------------------------------------------------------------

def _mode_scores(pred_frames: np.ndarray, real: np.ndarray, random_frames: list[np.ndarray],
                 nets: _FeatureNets) -> dict[str, Any]:
    """Scores of generated frames (B, H, ...) against the real ones, per horizon step and overall."""
    psnr_bh = _capped_psnr(pred_frames, real)  # (B, H)
    random_psnr = torch.stack([_capped_psnr(r, real) for r in random_frames])  # (D, B, H)
    delta_bh = psnr_bh - random_psnr.mean(dim=0)  # (B, H): metrics.delta_psnr with the PSNR cap
    extra, notes = nets.scores(pred_frames, real)
    return {
        "psnr": float(psnr_bh.mean()),
        "ssim": float(M.ssim(pred_frames, real).mean()),
        "delta_psnr": float(delta_bh.mean()),
        "psnr_random_actions": float(random_psnr.mean()),
        "random_draws": len(random_frames),
        **extra,
        "psnr_by_horizon": [float(v) for v in psnr_bh.mean(dim=0)],
        "delta_psnr_by_horizon": [float(v) for v in delta_bh.mean(dim=0)],
        "notes": notes,
    }


def _generate_clips(gen, mode: EvalMode, tokens: Tensor, actions: Tensor, opts: EvalOptions, *,
                    window: int) -> tuple[Tensor, float]:
    """Generate every clip (B, L, ...) in batches of ``opts.batch_size``: frames (B, H, ...) and rollout seconds."""
    out, seconds = [], 0.0
    for i in range(0, tokens.shape[0], opts.batch_size):
        tok, act = tokens[i : i + opts.batch_size], actions[i : i + opts.batch_size]
        if mode is EvalMode.AUTOREGRESSIVE:
            frames, secs = generate_autoregressive(gen, tok, act, opts.context, seed=opts.seed + i)
            seconds += secs
        else:
            frames = generate_teacher_forced(gen, tok, act, opts.context, window=window, seed=opts.seed + i)
        out.append(frames)
    return torch.cat(out), seconds


def _evaluate_embodiment(loaded, store: EpisodeStore, opts: EvalOptions, nets: _FeatureNets, *,
                         horizon: int, holdout: float, passive: bool, device: torch.device) -> tuple[dict, dict]:
    """Metrics of one dataset and the arrays the report shows (first clip, real and generated)."""
    spec = loaded.embodiments[store.embodiment]
    frame_hz = float(loaded.config["model"]["frame_hz"])
    train_ids, held = split_episodes(store.num_episodes, holdout)
    if not held:
        raise DataError(f"{store.root} has {store.num_episodes} episode(s), expected at least 2 so one can be held out")
    held = held[: opts.episodes] if opts.episodes else held
    length = opts.context + horizon
    clips = _clips(store, spec, frame_hz=frame_hz, length=length, held=held)
    real = clips.frames[:, opts.context :]  # (B, H, h, w, 3) the frames to predict
    tokens = _encode(loaded.tokenizer, clips.frames, device)  # (B, L, ...)
    true_actions = torch.from_numpy(clips.actions).to(device)  # (B, L, k*A)
    action_gen = torch.Generator().manual_seed(opts.seed)
    random_actions = []
    for _ in range(opts.random_draws):
        r = _random_actions(store, spec, train_ids, true_actions.shape[:2], action_gen).to(device)  # (B, L, k*A)
        # The actions between the context frames are observed history; only those driving the future are random.
        r[:, : opts.context - 1] = true_actions[:, : opts.context - 1]
        random_actions.append(r)

    gen = _generator(loaded, store.embodiment, opts, passive=passive)
    window = _window(loaded)
    result: dict[str, Any] = {"clips": int(tokens.shape[0]), "held_out_episodes": [int(e) for e in held],
                              "modes": {}}
    shown: dict[str, np.ndarray] = {"real": clips.frames[0]}
    generated_frames, seconds = 0, 0.0
    for mode in opts.mode.modes:
        frames, secs = _generate_clips(gen, mode, tokens, true_actions, opts, window=window)  # (B, H, ...)
        if mode is EvalMode.AUTOREGRESSIVE:  # speed is measured on the true-action rollout only
            generated_frames, seconds = frames.shape[0] * frames.shape[1], secs
        pred = _decode(loaded.tokenizer, frames)  # (B, H, h, w, 3)
        randoms = [_decode(loaded.tokenizer, _generate_clips(gen, mode, tokens, r, opts, window=window)[0])
                   for r in random_actions]
        result["modes"][mode.value] = _mode_scores(pred, real, randoms, nets)
        shown[mode.value] = np.concatenate([clips.frames[0, : opts.context], pred[0]])
    headline = EvalMode.AUTOREGRESSIVE if EvalMode.AUTOREGRESSIVE in opts.mode.modes else EvalMode.TEACHER_FORCED
    scores = result["modes"][headline.value]
    result.update({k: scores[k] for k in HEADLINE_KEYS}, headline_mode=headline.value)
    result["fps"] = M.fps(generated_frames, seconds) if generated_frames else None
    result["recon_psnr"] = float(_capped_psnr(_decode(loaded.tokenizer, tokens[:, opts.context :]), real).mean())
    notes = dict(scores["notes"])
    if result["fps"] is None:
        notes["fps"] = "measured on autoregressive rollouts only; run with --mode autoregressive or both"
    result["perplexity"], result["perplexity_tokens"] = None, 0
    if loaded.config.get("kind", "hma") == "hma" and loaded.config["model"]["kind"] == "discrete":
        result["perplexity"], result["perplexity_tokens"] = _store_perplexity(
            loaded, store, spec, held, frame_hz=frame_hz, opts=opts, passive=passive, device=device)
    else:
        notes["perplexity"] = "defined for discrete-token (MaskGIT) runs only"
    found = _evaluate_counterfactual(loaded, store, spec, gen, opts, held=held, horizon=horizon, window=window,
                                     device=device)
    if found is not None:
        result["counterfactual"], shown["counterfactual"] = found
    result["notes"] = notes
    return result, shown


def _evaluate_counterfactual(loaded, store: EpisodeStore, spec, gen, opts: EvalOptions, *, held: Sequence[int],
                             horizon: int, window: int, device: torch.device) -> tuple[dict, dict] | None:
    """Scores against the simulator's counterfactual branches (:mod:`hma.eval.counterfactual`), when the dataset has them.

    Both futures of a clip pair are rolled out autoregressively from the same context and sampling noise.
    """
    from hma.data.sim.branches import open_branches
    from hma.eval.counterfactual import counterfactual_clips, counterfactual_scores

    found = open_branches(store.root)
    if found is None:
        return None
    norm = spec.normalizer
    clips = counterfactual_clips(store, *found, held=held, chunk=spec.chunk, context=opts.context, horizon=horizon,
                                 mean=norm.mean[: store.action_dim], std=norm.std[: store.action_dim])
    if clips is None:
        return None
    c = opts.context
    tokens = _encode(loaded.tokenizer, clips.frames, device)  # (B, L, ...)
    futures = {}
    for name, actions in (("true", clips.actions), ("counterfactual", clips.cf_actions)):
        pred, _ = _generate_clips(gen, EvalMode.AUTOREGRESSIVE, tokens, torch.from_numpy(actions).to(device), opts,
                                  window=window)
        futures[name] = _decode(loaded.tokenizer, pred)  # (B, H, h, w, 3)
    recon = _decode(loaded.tokenizer, tokens[:, c:])
    recon_cf = _decode(loaded.tokenizer, _encode(loaded.tokenizer, clips.cf_future, device))
    real = clips.frames[:, c:]
    scores = counterfactual_scores(futures["true"], futures["counterfactual"], real, clips.cf_future, recon, recon_cf,
                                   policies=clips.policies, psnr_cap=PSNR_CAP_DB, seed=opts.seed)
    # Show the pair whose two futures differ most: the one where following the actions is visible.
    i = int(np.argmax(np.abs(real.astype(np.int16) - clips.cf_future).reshape(len(real), -1).mean(axis=1)))
    ctx = clips.frames[i, :c]
    shown = {"simulator, true actions": clips.frames[i], "model, true actions": np.concatenate([ctx, futures["true"][i]]),
             "simulator, other actions": np.concatenate([ctx, clips.cf_future[i]]),
             "model, other actions": np.concatenate([ctx, futures["counterfactual"][i]]),
             "policy": clips.policies[i]}
    return scores, shown


def _store_perplexity(loaded, store: EpisodeStore, spec, held: Sequence[int], *, frame_hz: float,
                      opts: EvalOptions, passive: bool, device: torch.device) -> tuple[float | None, int]:
    window = _window(loaded)
    ds = WindowDataset(store, window, frame_hz, episodes=held, normalizer=spec.normalizer)
    if not len(ds):
        return None, 0
    take = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), opts.perplexity_windows)).astype(np.int64))
    batch = ds.get_batch(take)
    tokens = _encode(loaded.tokenizer, np.asarray(batch["frames"]), device)  # (N, T, h, w)
    actions = torch.from_numpy(batch["actions"]).to(device)  # (N, T, k*A)
    # Score a model in the setting it was trained for: a passive model never saw actions.
    setting = Setting.VIDEO if passive else Setting.FORWARD
    return heldout_perplexity(loaded.model, tokens, actions, embodiment=store.embodiment, setting=setting,
                              seed=opts.seed, batch_size=opts.batch_size)


def evaluate(run: str | Path, data: Sequence[str | Path], out: str | Path, *, horizon: int | None = None,
             mode: str | EvalMode = EvalMode.BOTH, episodes: int | None = None,
             random_draws: int = M.MIN_RANDOM_DRAWS, context: int = 2, unmask_steps: int = 2,
             temperature: float = 0.0, diffusion_steps: int | None = None, batch_size: int = 16,
             perplexity_windows: int = 64, seed: int = 0, device: str | torch.device | None = None,
             report: bool = True, precision: str = "fp32") -> dict[str, Any]:
    """Evaluate run ``run`` on the held-out episodes of ``data``; writes ``out/metrics.json`` (and the report).

    Returns the metrics dict: ``{"per_embodiment": {name: {...}}, "overall": {...}, ...}``.
    Datasets of embodiments the run does not know are listed under ``skipped``.
    """
    import hma

    opts = EvalOptions(horizon=horizon, context=context, mode=mode, episodes=episodes, random_draws=random_draws,
                       unmask_steps=unmask_steps, temperature=temperature, diffusion_steps=diffusion_steps,
                       batch_size=batch_size, perplexity_windows=perplexity_windows, seed=seed, precision=precision)
    from hma.train.loading import resolve_device

    device = resolve_device(device)
    loaded = hma.load(run, device=device)
    window = _window(loaded)
    horizon = opts.horizon or window - 1
    train_cfg = loaded.config.get("train", {})
    holdout = float(train_cfg.get("holdout", 0.1))
    passive = Setting.parse(train_cfg.get("setting", "full")) is Setting.VIDEO
    nets = _FeatureNets()
    out = Path(out)
    per: dict[str, dict] = {}
    shown: dict[str, dict[str, np.ndarray]] = {}
    skipped: dict[str, str] = {}
    from hma.progress import bar

    for store in bar(open_datasets(data), desc="eval", unit="robot", leave=False):
        if store.embodiment not in loaded.embodiments:
            skipped[str(store.root)] = f"embodiment {store.embodiment!r} is unknown to the run"
            continue
        if store.embodiment in per:
            skipped[str(store.root)] = f"embodiment {store.embodiment!r} was already evaluated on another dataset"
            continue
        per[store.embodiment], shown[store.embodiment] = _evaluate_embodiment(
            loaded, store, opts, nets, horizon=horizon, holdout=holdout, passive=passive, device=device)
    if not per:
        raise DataError(f"no dataset under {[str(d) for d in data]} has an embodiment the run knows "
                        f"({', '.join(sorted(loaded.embodiments))})")
    overall: dict[str, Any] = {k: _finite_mean(r.get(k) for r in per.values())
                               for k in (*HEADLINE_KEYS, "perplexity", "fps", "recon_psnr")}
    overall["clips"] = sum(r["clips"] for r in per.values())
    if any("counterfactual" in r for r in per.values()):
        from hma.eval.counterfactual import counterfactual_summary

        overall["counterfactual"] = counterfactual_summary(per)
    overall["modes"] = {m.value: {k: _finite_mean(r["modes"][m.value].get(k) for r in per.values())
                                  for k in ("psnr", "ssim", "delta_psnr")} for m in opts.mode.modes}
    result = {
        "run": str(Path(run)),
        "kind": loaded.config.get("kind", "hma"),
        "tokens": loaded.config["model"]["kind"],
        "setting": train_cfg.get("setting", "full"),
        "data": [str(d) for d in data],
        "options": {**asdict(opts), "mode": opts.mode.value, "horizon": horizon, "window": window,
                    "holdout": holdout, "device": str(device), "threads": torch.get_num_threads()},
        "per_embodiment": per,
        "overall": overall,
        "skipped": skipped,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / METRICS_FILE, result)
    if report:
        from hma.eval.report import write_report

        write_report(result, shown, out)
    return result
