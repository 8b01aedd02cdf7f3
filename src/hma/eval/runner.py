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
decoding excluded; beside it the 1-minute load average) comes from the autoregressive rollout.

Per horizon step each mode also reports the **copy-last-frame baseline** (the last context
frame held, against the real future: what a model that predicts no change scores) and the
**motion PSNR** (PSNR over the pixels where the real frame differs from the last context
frame, where a static background cannot hide a vanished robot).

Discrete runs also get **next-frame token accuracy** (``token_accuracy``) on windows of the
held-out and of the training episodes: the true past fully visible, the last frame's tokens
predicted in one pass, the share right over all tokens, the unchanged ones and the changed
ones, beside copying the last frame (which gets exactly the unchanged ones right). Below
copying, the model has learned less than "nothing moves"; a training/held-out gap is overfitting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hma.config import RunKind, Setting, TokenKind
from hma.data.store import EpisodeStore, open_datasets
from hma.data.windows import split_episodes
from hma.errors import ConfigError, DataError
from hma.eval import metrics as M
from hma.eval.clips import decode_clips, encode_clips, heldout_clips, random_action_chunks
from hma.eval.rollouts import generate_autoregressive, generate_teacher_forced  # noqa: F401 (API)
from hma.eval.token_scores import store_perplexity, store_token_accuracy
from hma.eval.report import METRICS_FILE, PSNR_PLOT_FILE, REPORT_FILE, VIDEO_DIR, write_report  # noqa: F401 (API)
from hma.io import atomic_write_json
from hma.run import LoadedRun
from hma.sampling.generators import FrameGenerator, adjustments, frame_generator, recommended
from hma.sampling.precision import resolve as resolve_precision

PSNR_CAP_DB = M.PSNR_CAP_DB
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
    precision: str = "auto"  # of generation (hma.sampling.precision); teacher-forced perplexity stays fp32
    # x log(changed-token weight) added to "stays" logits (1 undoes the weight); None: the run's recommendation
    logit_adjustment: float | None = None
    action_guidance: float | None = None  # classifier-free guidance on actions (1 = off); None: the run's

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


# -- generation ------------------------------------------------------------------

def _frame_generator(loaded: LoadedRun, embodiment: str, opts: EvalOptions) -> FrameGenerator:
    return frame_generator(loaded, embodiment, unmask_steps=opts.unmask_steps, temperature=opts.temperature,
                           diffusion_steps=opts.diffusion_steps, precision=opts.precision,
                           logit_adjustment=opts.logit_adjustment, action_guidance=opts.action_guidance)


def _window(loaded: LoadedRun) -> int:
    return int(loaded.model.config.num_frames)


# -- metrics ------------------------------------------------------------------------

def _finite_mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


# -- the runner -----------------------------------------------------------------------

def _mode_scores(pred_frames: np.ndarray, real: np.ndarray, random_frames: list[np.ndarray],
                 nets: M.FeatureNets, last_context: np.ndarray) -> dict[str, Any]:
    """Scores of generated frames (B, H, ...) against the real ones, per horizon step and overall;
    ``last_context`` (B, h, w, 3) is the frame the copy baseline holds."""
    psnr_bh = M.psnr(pred_frames, real, cap_db=PSNR_CAP_DB)  # (B, H)
    delta_bh = M.delta_psnr(pred_frames, random_frames, real, cap_db=PSNR_CAP_DB)  # (B, H)
    held = np.broadcast_to(last_context[:, None], real.shape)  # (B, H, h, w, 3)
    copy_bh = M.psnr(held, real, cap_db=PSNR_CAP_DB)  # (B, H)
    moved = M.motion_mask(real, held)  # (B, H, h, w)
    # One masked PSNR per clip and step (NaN where nothing moved), averaged over the clips that moved.
    motion_bh = torch.stack([M.masked_psnr(pred_frames[:, i : i + 1], real[:, i : i + 1], moved[:, i : i + 1],
                                           cap_db=PSNR_CAP_DB) for i in range(real.shape[1])], dim=1)  # (B, H)
    extra, notes = nets.scores(pred_frames, real)
    return {
        "psnr": float(psnr_bh.mean()),
        "ssim": float(M.ssim(pred_frames, real).mean()),
        "delta_psnr": float(delta_bh.mean()),
        "psnr_random_actions": float(torch.stack([M.psnr(r, real, cap_db=PSNR_CAP_DB) for r in random_frames]).mean()),
        "random_draws": len(random_frames),
        **extra,
        "psnr_by_horizon": [float(v) for v in psnr_bh.mean(dim=0)],
        "psnr_by_clip_and_horizon": [[float(v) for v in clip] for clip in psnr_bh],  # (B, H): for intervals
        "delta_psnr_by_clip": [float(v) for v in delta_bh.mean(dim=1)],  # (B,): for intervals
        "delta_psnr_by_horizon": [float(v) for v in delta_bh.mean(dim=0)],
        "copy_psnr": float(copy_bh.mean()),
        "copy_psnr_by_horizon": [float(v) for v in copy_bh.mean(dim=0)],
        "motion_psnr_by_horizon": [_nan_to_none(float(v)) for v in motion_bh.nanmean(dim=0)],
        "notes": notes,
    }


def _nan_to_none(v: float) -> float | None:
    """JSON has no NaN: a step where no clip moved has no motion PSNR."""
    return None if math.isnan(v) else v


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


def _evaluate_embodiment(loaded: LoadedRun, store: EpisodeStore, opts: EvalOptions, nets: M.FeatureNets, *,
                         horizon: int, holdout: float, passive: bool, device: torch.device) -> tuple[dict, dict]:
    """Metrics of one dataset and the arrays the report shows (first clip, real and generated)."""
    spec = loaded.embodiments[store.embodiment]
    frame_hz = loaded.frame_hz
    train_ids, held = split_episodes(store.num_episodes, holdout)
    if not held:
        raise DataError(f"{store.root} has {store.num_episodes} episode(s), expected at least 2 so one can be held out")
    held = held[: opts.episodes] if opts.episodes else held
    length = opts.context + horizon
    clips = heldout_clips(store, spec, frame_hz=frame_hz, length=length, held=held)
    real = clips.frames[:, opts.context :]  # (B, H, h, w, 3) the frames to predict
    tokens = encode_clips(loaded.tokenizer, clips.frames, device)  # (B, L, ...)
    true_actions = torch.from_numpy(clips.actions).to(device)  # (B, L, k*A)
    action_gen = torch.Generator().manual_seed(opts.seed)
    random_actions = []
    for _ in range(opts.random_draws):
        r = random_action_chunks(store, spec, train_ids, true_actions.shape[:2], action_gen).to(device)  # (B, L, k*A)
        # The actions between the context frames are observed history; only those driving the future are random.
        r[:, : opts.context - 1] = true_actions[:, : opts.context - 1]
        random_actions.append(r)

    gen = _frame_generator(loaded, store.embodiment, opts)
    window = _window(loaded)
    result: dict[str, Any] = {"clips": int(tokens.shape[0]), "held_out_episodes": [int(e) for e in held],
                              "modes": {}}
    shown: dict[str, np.ndarray] = {"real": clips.frames[0]}
    generated_frames, seconds = 0, 0.0
    for mode in opts.mode.modes:
        frames, secs = _generate_clips(gen, mode, tokens, true_actions, opts, window=window)  # (B, H, ...)
        if mode is EvalMode.AUTOREGRESSIVE:  # speed is measured on the true-action rollout only
            generated_frames, seconds = frames.shape[0] * frames.shape[1], secs
        pred = decode_clips(loaded.tokenizer, frames)  # (B, H, h, w, 3)
        randoms = [decode_clips(loaded.tokenizer, _generate_clips(gen, mode, tokens, r, opts, window=window)[0])
                   for r in random_actions]
        result["modes"][mode.value] = _mode_scores(pred, real, randoms, nets, clips.frames[:, opts.context - 1])
        shown[mode.value] = np.concatenate([clips.frames[0, : opts.context], pred[0]])
    headline = EvalMode.AUTOREGRESSIVE if EvalMode.AUTOREGRESSIVE in opts.mode.modes else EvalMode.TEACHER_FORCED
    scores = result["modes"][headline.value]
    result.update({k: scores[k] for k in HEADLINE_KEYS}, headline_mode=headline.value)
    result["fps"] = M.fps(generated_frames, seconds) if generated_frames else None
    result["load"] = M.machine_load() if generated_frames else None  # what else ran while the speed was measured
    result["recon_psnr"] = float(M.psnr(decode_clips(loaded.tokenizer, tokens[:, opts.context :]), real, cap_db=PSNR_CAP_DB).mean())
    notes = dict(scores["notes"])
    if result["fps"] is None:
        notes["fps"] = "measured on autoregressive rollouts only; run with --mode autoregressive or both"
    result["perplexity"], result["perplexity_tokens"] = None, 0
    if loaded.kind == RunKind.HMA and loaded.token_kind == TokenKind.DISCRETE:
        scored = {"windows": opts.perplexity_windows, "batch_size": opts.batch_size, "passive": passive, "device": device}
        result["perplexity"], result["perplexity_tokens"] = store_perplexity(loaded, store, held, seed=opts.seed,
                                                                             **scored)
        # The sampler's own adjustments (hma.sampling.generators.frame_generator), so a row scores what it generates.
        stay_bias, _ = adjustments(loaded, opts.logit_adjustment, opts.action_guidance)
        result["token_accuracy"] = {split: store_token_accuracy(loaded, store, episodes, stay_bias=stay_bias,
                                                                guidance=opts.action_guidance, **scored)
                                    for split, episodes in (("heldout", held), ("train", train_ids))}
    else:
        notes["perplexity"] = "defined for discrete-token (MaskGIT) runs only"
        notes["token_accuracy"] = "defined for discrete-token (MaskGIT) runs only"
    found = _evaluate_counterfactual(loaded, store, spec, gen, opts, held=held, horizon=horizon, window=window,
                                     device=device)
    if found is not None:
        result["counterfactual"], shown["counterfactual"] = found
    result["notes"] = notes
    return result, shown


def _evaluate_counterfactual(loaded: LoadedRun, store: EpisodeStore, spec, gen, opts: EvalOptions, *, held: Sequence[int],
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
    tokens = encode_clips(loaded.tokenizer, clips.frames, device)  # (B, L, ...)
    futures = {}
    for name, actions in (("true", clips.actions), ("counterfactual", clips.cf_actions)):
        pred, _ = _generate_clips(gen, EvalMode.AUTOREGRESSIVE, tokens, torch.from_numpy(actions).to(device), opts,
                                  window=window)
        futures[name] = decode_clips(loaded.tokenizer, pred)  # (B, H, h, w, 3)
    recon = decode_clips(loaded.tokenizer, tokens[:, c:])
    recon_cf = decode_clips(loaded.tokenizer, encode_clips(loaded.tokenizer, clips.cf_future, device))
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


def _overall(per: dict[str, dict], opts: EvalOptions) -> dict[str, Any]:
    """The figures over every robot: means of the robots' (each robot counts the same)."""
    overall: dict[str, Any] = {k: _finite_mean(r.get(k) for r in per.values())
                               for k in (*HEADLINE_KEYS, "perplexity", "fps", "recon_psnr")}
    overall["clips"] = sum(r["clips"] for r in per.values())
    if any("counterfactual" in r for r in per.values()):
        from hma.eval.counterfactual import counterfactual_summary

        overall["counterfactual"] = counterfactual_summary(per)
    accuracies = [r["token_accuracy"] for r in per.values() if "token_accuracy" in r]
    if accuracies:  # the mean over robots of each share, so that every robot counts the same
        overall["token_accuracy"] = {split: {k: _finite_mean(a[split][k] for a in accuracies)
                                             for k in ("all", "unchanged", "changed", "copy", "above_copy")}
                                     for split in ("heldout", "train")}
    overall["modes"] = {m.value: {k: _finite_mean(r["modes"][m.value].get(k) for r in per.values())
                                  for k in ("psnr", "ssim", "delta_psnr")} for m in opts.mode.modes}
    return overall


def evaluate(run: str | Path, data: Sequence[str | Path] | None, out: str | Path, options: EvalOptions | None = None,
             *, device: str | torch.device | None = None, report: bool = True, **changes: Any) -> dict[str, Any]:
    """Evaluate run ``run`` on the held-out episodes of ``data`` (None: the run's training data
    still on disk, :func:`hma.run.run_datasets`); writes ``out/metrics.json`` (and the report).

    ``options`` (default :class:`EvalOptions()`) with any of its fields changed by ``changes``,
    e.g. ``evaluate(run, data, out, horizon=8, mode="autoregressive")``. Returns the metrics
    dict: ``{"per_embodiment": {name: {...}}, "overall": {...}, ...}``. Datasets of
    embodiments the run does not know are listed under ``skipped``.
    """
    from hma.device import resolve_device
    from hma.run import load, run_datasets

    unknown = sorted(set(changes) - {f.name for f in fields(EvalOptions)})
    if unknown:
        raise ConfigError(f"evaluation option(s) {', '.join(unknown)} unknown, expected fields of EvalOptions: "
                          f"{', '.join(f.name for f in fields(EvalOptions))}")
    opts = replace(options or EvalOptions(), **changes)
    device = resolve_device(device)
    loaded = load(run, device=device)
    if data is None and not (data := run_datasets(loaded)):
        raise DataError(f"none of run {run}'s training datasets is on disk; expected --data DATASET ...")
    # The arithmetic generation runs in, auto resolved for this machine (the diffusion baseline's DDIM is fp32).
    choice = resolve_precision(opts.precision if loaded.kind == RunKind.HMA else "fp32", device)
    opts = replace(opts, precision=choice.precision.value)
    if loaded.kind == RunKind.HMA:  # record what the sampler uses, the run's recommendation included
        adjust, guidance = recommended(loaded, logit_adjustment=opts.logit_adjustment,
                                       action_guidance=opts.action_guidance)
        opts = replace(opts, logit_adjustment=adjust, action_guidance=guidance)
    window = _window(loaded)
    horizon = opts.horizon or window - 1
    holdout = loaded.holdout
    passive = Setting.parse(loaded.setting) is Setting.VIDEO
    nets = M.FeatureNets()
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
    overall = _overall(per, opts)
    result = {
        "run": str(Path(run)),
        "kind": loaded.kind.value,
        "tokens": loaded.token_kind.value,
        "setting": loaded.setting,
        "data": [str(d) for d in data],
        "options": {**asdict(opts), "mode": opts.mode.value, "horizon": horizon, "window": window,
                    "holdout": holdout, "device": str(device), "threads": torch.get_num_threads(),
                    "precision_choice": str(choice)},
        "per_embodiment": per,
        "overall": overall,
        "skipped": skipped,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / METRICS_FILE, result)
    if report:
        write_report(result, shown, out)
    return result
