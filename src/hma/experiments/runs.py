"""What every ``hma experiment`` recipe is made of: its options and training budget, and the
steps that train one run, evaluate it and turn it into a table row."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hma.train.state import Budget
from hma.errors import ConfigError

RUNS_DIR = "runs"
EVAL_DIR = "eval"

# The `--scale` names of earlier releases and the presets they were: results.json files of those
# releases record a scale, and --render-only still renders their sections.
SCALE_PRESETS = {"tiny": "micro", "small": "tiny", "demo": "demo"}


@dataclass
class ExperimentOptions:
    data: list[str]
    tokenizers: list[str]  # one folder per token kind the recipe needs
    out: Path
    budget: Budget
    preset: str = "micro"  # a model preset, hma.config.PRESETS
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    horizon: int | None = None
    eval_episodes: int | None = 4
    target: str | None = None  # transfer: the held-out embodiment (default: the last by name); scaling: the evaluated one
    axis: str | None = None  # scaling: embodiments, trajectories or size
    results_file: Path | None = None  # whose section the recipe rewrites (None: none)
    command: str = ""  # the exact command line, quoted in the section
    progress: bool = False
    resume: bool = False  # keep the runs and evaluations OUT already holds from the same settings
    eval_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from hma.config import PRESETS

        if self.preset not in PRESETS:
            raise ConfigError(f"preset {self.preset!r} is unknown, expected one of {', '.join(PRESETS)}")
        self.out = Path(self.out)
        self.results_file = None if self.results_file is None else Path(self.results_file)

    @property
    def assets(self) -> Path:
        """Where plots and GIFs go: beside the results file (its sections link to them), else under OUT."""
        return (self.out if self.results_file is None else self.results_file.parent) / "assets"


def tokenizer_by_kind(paths: Sequence[str]) -> dict[str, str]:
    from hma.tokenizer import load_tokenizer

    found: dict[str, str] = {}
    for p in paths:
        kind = load_tokenizer(p).kind
        if kind in found:
            raise ConfigError(f"tokenizers {found[kind]} and {p} are both {kind}; expected at most one per kind")
        found[kind] = str(p)
    return found


def need_tokenizer(opts: ExperimentOptions, kind: str, recipe: str) -> str:
    found = tokenizer_by_kind(opts.tokenizers)
    if kind not in found:
        raise ConfigError(f"experiment {recipe!r} needs a {kind} tokenizer, got {', '.join(opts.tokenizers) or 'none'}; "
                          f"pass it with --tokenizer (train one with `hma tokenizer train --kind {kind}`)")
    return found[kind]


def tokenize(datasets: Sequence[Path], tokenizer_dir: str) -> None:
    """Write the token shards the runs train on (kept when already current)."""
    from hma.data.store import EpisodeStore
    from hma.tokenizer import load_tokenizer, tokenize_dataset

    tokenizer = load_tokenizer(tokenizer_dir)
    for d in datasets:
        tokenize_dataset(EpisodeStore(d), tokenizer, progress=False)


def datasets_by_embodiment(paths: Sequence[str]) -> dict[str, list[Path]]:
    from hma.data.store import EpisodeStore, find_datasets

    groups: dict[str, list[Path]] = {}
    for d in find_datasets(paths):
        groups.setdefault(EpisodeStore(d).embodiment, []).append(d)
    return groups


def warmup_steps(budget: Budget) -> int:
    """Warmup steps: a tenth of a step budget (at most 100); 20 for a time budget, whose length is unknown up front."""
    return min(100, max(1, budget.steps // 10)) if budget.steps is not None else 20


RUN_RECORD = "experiment_run.json"  # a finished run's row fields, and what it was trained with
EVAL_RECORD = "experiment_eval.json"  # an evaluation's options, beside its metrics.json


def _recorded(folder: Path, name: str, request: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """What ``folder/name`` recorded, when it was made with exactly ``request`` (any, when None); else None."""
    from hma.io import read_json

    path = folder / name
    if not path.is_file():
        return None
    saved = read_json(path, "experiment record")
    return saved["result"] if request is None or saved.get("request") == request else None


def _record(folder: Path, name: str, request: dict[str, Any], result: dict[str, Any]) -> None:
    from hma.io import atomic_write_json

    atomic_write_json(folder / name, {"request": request, "result": result})


def train_run(opts: ExperimentOptions, label: str, data: Sequence[Path], *, tokenizer: str | None = None,
           init_from: Path | None = None, model_changes: dict[str, Any] | None = None, budget: Budget | None = None,
           **changes: Any) -> dict[str, Any]:
    """Train one run of the recipe into OUT/NAME/runs/LABEL; returns steps, seconds and parameters.

    ``budget`` replaces the recipe's training budget for this run. A run that an earlier call
    finished with the same configuration is kept (a re-run experiment trains only its new rows).
    """
    from hma.run import load
    from hma.train import TrainConfig, train
    from hma.train import checkpoint as ckpt

    run = opts.out / RUNS_DIR / label
    budget = budget or opts.budget
    # A row that names no setting or changed-token weight trains as the paper's recipes always have
    # (full dynamics, a plain mean), not with hma's default recipe (hma.config.RECIPE).
    changes = {"setting": "full", "changed_token_weight": 1.0, **changes}
    cfg = TrainConfig(data=[str(d) for d in data], out=str(run), tokenizer=tokenizer, steps=budget.steps,
                      minutes=budget.minutes, batch_size=opts.batch_size, lr=opts.lr, seed=opts.seed,
                      warmup=warmup_steps(budget), progress=opts.progress,
                      checkpoint_every=10**9, init_from=str(init_from) if init_from else None,
                      preset=opts.preset, model_overrides={} if init_from else dict(model_changes or {}), **changes)
    request = json_safe({k: v for k, v in vars(cfg).items() if k != "progress"})
    if budget.steps is not None and (done := _recorded(run, RUN_RECORD, request)) is not None:
        return done
    if opts.resume and run.exists():  # trained with other settings, or stopped before its record: trained anew
        import shutil

        shutil.rmtree(run)
    started = time.perf_counter()
    train(cfg)
    seconds = time.perf_counter() - started
    step = int(ckpt.read_training_state(run)["step"])
    params = sum(p.numel() for p in load(run).model.parameters())
    result = {"run": str(run), "steps": step, "train_seconds": round(seconds, 1), "params": params}
    _record(run, RUN_RECORD, request, result)
    return result


def json_safe(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists, paths strings), for comparing records."""
    import json

    return json.loads(json.dumps(value, default=str))


def evaluate_run(opts: ExperimentOptions, label: str, data: Sequence[Path], *, horizon: int | None = None,
              run: str | None = None, **sampling: Any) -> dict[str, Any]:
    """Evaluate run ``run`` (default: ``label``) into OUT/NAME/eval/LABEL; ``sampling`` overrides the eval's options.

    An evaluation made earlier of the same run with the same options, after the run last
    changed, is read back instead of repeated.
    """
    from hma.eval.report import METRICS_FILE
    from hma.eval.runner import evaluate
    from hma.io import read_json

    # fp32 generation, as every recipe's results were measured, whatever this machine's `auto` would pick;
    # a row that varies the precision says so (levers: "int8 generation").
    kwargs = {"horizon": horizon or opts.horizon, "episodes": opts.eval_episodes, "seed": opts.seed,
              "precision": "fp32", **opts.eval_kwargs, **sampling}
    source, out = opts.out / RUNS_DIR / (run or label), opts.out / EVAL_DIR / label
    request = json_safe({"run": str(source), "data": [str(d) for d in data], **kwargs,
                         "trained": _recorded(source, RUN_RECORD)})
    if request["trained"] is not None and _recorded(out, EVAL_RECORD, request) is not None:
        return read_json(out / METRICS_FILE, "evaluation metrics")
    evaluated = evaluate(source, [str(d) for d in data], out, **kwargs)
    _record(out, EVAL_RECORD, request, {"metrics": METRICS_FILE})
    return evaluated


def score_row(label: str, trained: dict[str, Any], evaluated: dict[str, Any], *, embodiment: str | None = None) -> dict[str, Any]:
    scores = evaluated["overall"] if embodiment is None else evaluated["per_embodiment"][embodiment]
    keys = ("psnr", "ssim", "delta_psnr", "perplexity", "fps", "recon_psnr", "lpips", "fvd")
    return {"label": label, **{k: scores.get(k) for k in keys}, **trained}


def clip_values(evaluated: dict[str, Any], key: str = "delta_psnr_by_clip") -> np.ndarray:
    """One value per evaluated clip (its headline mode's ``key``), every embodiment's in name order:
    runs evaluated on the same data hold the same clips in the same order, so two runs' arrays pair up."""
    per = evaluated["per_embodiment"]
    return np.concatenate([np.asarray(per[name]["modes"][per[name]["headline_mode"]][key], dtype=np.float64)
                           for name in sorted(per)])


def interval_bounds(values: np.ndarray, *, seed: int = 0) -> list[float]:
    """The 95% bootstrap interval of the mean of ``values`` as [lo, hi] (zero width for one value)."""
    from hma.eval.metrics import bootstrap_interval

    return list(bootstrap_interval(values, seed=seed)) if len(values) > 1 else [float(values[0])] * 2


def interval_text(values: np.ndarray, *, seed: int = 0, bounds: Sequence[float] | None = None) -> str:
    """``mean [lo, hi]``: the mean of ``values`` with its 95% bootstrap interval (``bounds`` when
    already computed by :func:`interval_bounds`)."""
    if len(values) < 2:
        return f"{float(np.mean(values)):.2f} (1 clip)"
    lo, hi = bounds if bounds is not None else interval_bounds(values, seed=seed)
    return f"{float(np.mean(values)):.2f} [{lo:.2f}, {hi:.2f}]"


def paired_difference(a: np.ndarray, b: np.ndarray, what: str, *, seed: int = 0) -> str:
    """A finding on the per-clip difference a - b: its mean, 95% bootstrap interval, and whether
    the interval excludes 0 (a difference beyond the noise of these clips)."""
    from hma.eval.metrics import bootstrap_interval

    d = a - b
    if len(d) < 2:
        return f"{what}: {float(d.mean()):+.2f} dB on 1 clip, no interval"
    lo, hi = bootstrap_interval(d, seed=seed)
    verdict = "outside the interval: a real difference" if lo > 0 or hi < 0 else "0 inside the interval: not a difference here"
    return f"{what}: {float(d.mean()):+.2f} dB [{lo:+.2f}, {hi:+.2f}] over {len(d)} clips, {verdict}"


def single_stream_fps(run: Path, data: Sequence[Path], *, frames: int, seed: int = 0,
                      diffusion_steps: int | None = None) -> float:
    """Frames per second of one environment (batch 1) rolled out from a held-out clip, decoding excluded.

    This is the paper's speed measure (generation wall time per frame); the batched FPS in
    ``evaluate`` is throughput over many clips instead.
    """
    import torch

    from hma.data.store import EpisodeStore
    from hma.data.windows import split_episodes
    from hma.eval.clips import encode_clips, heldout_clips
    from hma.eval.runner import generate_autoregressive
    from hma.run import load
    from hma.sampling.generators import frame_generator

    loaded = load(run)
    store = next(s for s in map(EpisodeStore, data) if s.embodiment in loaded.embodiments)
    spec = loaded.embodiments[store.embodiment]
    _, held = split_episodes(store.num_episodes, loaded.holdout)
    device = next(loaded.model.parameters()).device
    clips = heldout_clips(store, spec, frame_hz=loaded.frame_hz, length=frames + 1, held=held)
    tokens = encode_clips(loaded.tokenizer, clips.frames[:1], device)  # (1, L, ...)
    actions = torch.from_numpy(clips.actions[:1]).to(device)  # (1, L, k*A)
    gen = frame_generator(loaded, store.embodiment, diffusion_steps=diffusion_steps, precision="fp32")
    generate_autoregressive(gen, tokens[:, :2], actions[:, :2], 1, seed=seed)  # warm-up (allocations, kernels)
    _, seconds = generate_autoregressive(gen, tokens, actions, 1, seed=seed)
    return frames / seconds
