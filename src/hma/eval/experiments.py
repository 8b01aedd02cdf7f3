"""``hma experiment NAME``: small recipes that reproduce the paper's comparisons at CPU scale.

Each recipe trains a few runs with the same budget, evaluates them with
:func:`hma.eval.evaluate` on the held-out episodes, and writes ``OUT/NAME/results.json``,
``OUT/NAME/results.md`` and its own section of ``docs/results.md`` (exact command, date,
table, and whether the paper's claim held here):

- ``actions``: passive video vs forward dynamics vs full dynamics (paper sec. 5: action-
  conditioned models are more faithful and controllable);
- ``transfer``: pre-trained on every embodiment but one, then fine-tuned on it, vs trained
  on it from scratch with the fine-tuning budget (paper: PSNR 22.04 vs 21.01, perplexity
  189.8 vs 305.9);
- ``methods``: MaskGIT vs MAR vs the video diffusion baseline at equal training compute,
  quality and generation speed (paper Table 1);
- ``injection``: concat vs modulate vs add vs cross-attention (paper's ablation);
- ``levers``: what makes a model follow its actions within a few minutes of CPU training
  (setting, loss weighting, frame rate), scored against the simulator's counterfactual
  branches (:mod:`hma.eval.counterfactual`);
- ``world-model``: one model trained with the demo's recipe on every robot of the data
  (the default suite's 12 for the long run), one row per robot against its branches.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hma.errors import ConfigError, DataError
from hma.eval.report import format_value, markdown_table
from hma.io import atomic_write_bytes, atomic_write_json

EXPERIMENTS = ("actions", "transfer", "methods", "injection", "levers", "world-model")
# docs/results.md sections, in order: the experiments, then the simulator-use reports.
RESULT_SECTIONS = EXPERIMENTS + ("policy-eval", "synth-bc", "speed")
RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"
RUNS_DIR = "runs"
EVAL_DIR = "eval"

# Trunk sizes that train to something measurable in minutes on a laptop CPU. ``small`` is the
# ``tiny`` preset itself; ``tiny`` halves depth and width again.
SCALES: dict[str, dict[str, Any]] = {
    "tiny": dict(num_blocks=2, width=64, num_heads=4, num_frames=4, diffusion_width=128, diffusion_blocks=2),
    "small": dict(num_blocks=4, width=128, num_heads=4, num_frames=8, diffusion_width=256, diffusion_blocks=3),
    # What `hma demo` trains (hma.demo.DemoBudget): the tiny preset with two blocks on 4-frame windows.
    "demo": dict(num_blocks=2, width=128, num_heads=4, num_frames=4, diffusion_width=256, diffusion_blocks=3),
}

RESULTS_TITLE = "# Results\n"
RESULTS_INTRO = (
    "Every section below is written by `hma experiment NAME`, which replaces only its own "
    "section (between its markers). Do not edit by hand: re-run the command shown instead.\n"
)


@dataclass(frozen=True)
class Budget:
    """The same training budget for every run of a recipe: optimizer steps or wall-clock minutes."""

    steps: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.minutes is None):
            raise ConfigError("give exactly one training budget: --steps N or --minutes M")
        if (self.steps is not None and self.steps < 1) or (self.minutes is not None and self.minutes <= 0):
            raise ConfigError(f"training budget {self.steps or self.minutes} is invalid; expected a positive number")

    def scaled(self, factor: float) -> Budget:
        """This budget times ``factor`` (steps rounded, at least one)."""
        if self.steps is not None:
            return Budget(steps=max(1, round(self.steps * factor)))
        return Budget(minutes=self.minutes * factor)

    def describe(self) -> str:
        if self.steps is not None:
            return f"{self.steps} optimizer steps per run (same steps)"
        return f"{self.minutes:g} minutes of wall-clock training per run (same wall time)"


@dataclass
class ExperimentOptions:
    data: list[str]
    tokenizers: list[str]  # one folder per token kind the recipe needs
    out: Path
    budget: Budget
    scale: str = "tiny"
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    horizon: int | None = None
    eval_episodes: int | None = 4
    target: str | None = None  # transfer: the held-out embodiment (default: the last by name)
    results_md: Path = Path("docs/results.md")
    command: str = ""  # the exact command line, quoted in docs/results.md
    progress: bool = False
    eval_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"scale {self.scale!r} is unknown, expected one of {', '.join(SCALES)}")
        self.out = Path(self.out)
        self.results_md = Path(self.results_md)


# -- building blocks ----------------------------------------------------------------------

def _tokenizer_by_kind(paths: Sequence[str]) -> dict[str, str]:
    from hma.tokenizer import load_tokenizer

    found: dict[str, str] = {}
    for p in paths:
        kind = load_tokenizer(p).kind
        if kind in found:
            raise ConfigError(f"tokenizers {found[kind]} and {p} are both {kind}; expected at most one per kind")
        found[kind] = str(p)
    return found


def _need_tokenizer(opts: ExperimentOptions, kind: str, recipe: str) -> str:
    found = _tokenizer_by_kind(opts.tokenizers)
    if kind not in found:
        raise ConfigError(f"experiment {recipe!r} needs a {kind} tokenizer, got {', '.join(opts.tokenizers) or 'none'}; "
                          f"pass it with --tokenizer (train one with `hma tokenizer train --kind {kind}`)")
    return found[kind]


def _tokenize(datasets: Sequence[Path], tokenizer_dir: str) -> None:
    """Write the token shards the runs train on (kept when already current)."""
    from hma.data.store import EpisodeStore
    from hma.tokenizer import load_tokenizer, tokenize_dataset

    tokenizer = load_tokenizer(tokenizer_dir)
    for d in datasets:
        tokenize_dataset(EpisodeStore(d), tokenizer, progress=False)


def _datasets_by_embodiment(paths: Sequence[str]) -> dict[str, list[Path]]:
    from hma.data.store import EpisodeStore, find_datasets

    groups: dict[str, list[Path]] = {}
    for d in find_datasets(paths):
        groups.setdefault(EpisodeStore(d).embodiment, []).append(d)
    return groups


def _warmup(budget: Budget) -> int:
    """Warmup steps: a tenth of a step budget (at most 100); 20 for a time budget, whose length is unknown up front."""
    return min(100, max(1, budget.steps // 10)) if budget.steps is not None else 20


def _train(opts: ExperimentOptions, label: str, data: Sequence[Path], *, tokenizer: str | None = None,
           init_from: Path | None = None, model_changes: dict[str, Any] | None = None, budget: Budget | None = None,
           **changes: Any) -> dict[str, Any]:
    """Train one run of the recipe into OUT/NAME/runs/LABEL; returns steps, seconds and parameters.

    ``budget`` replaces the recipe's training budget for this run.
    """
    from hma.train import TrainConfig, train
    from hma.train import checkpoint as ckpt
    from hma.train.loading import load

    run = opts.out / RUNS_DIR / label
    budget = budget or opts.budget
    started = time.perf_counter()
    cfg = TrainConfig(data=[str(d) for d in data], out=str(run), tokenizer=tokenizer, steps=budget.steps,
                      minutes=budget.minutes, batch_size=opts.batch_size, lr=opts.lr, seed=opts.seed,
                      warmup=_warmup(budget), progress=opts.progress,
                      checkpoint_every=10**9, init_from=str(init_from) if init_from else None,
                      model_overrides={} if init_from else {**SCALES[opts.scale], **(model_changes or {})}, **changes)
    train(cfg)
    seconds = time.perf_counter() - started
    step = int(ckpt.read_training_state(run)["step"])
    params = sum(p.numel() for p in load(run).model.parameters())
    return {"run": str(run), "steps": step, "train_seconds": round(seconds, 1), "params": params}


def _evaluate(opts: ExperimentOptions, label: str, data: Sequence[Path], *, horizon: int | None = None,
              run: str | None = None, **sampling: Any) -> dict[str, Any]:
    """Evaluate run ``run`` (default: ``label``) into OUT/NAME/eval/LABEL; ``sampling`` overrides the eval's options."""
    from hma.eval.runner import evaluate

    kwargs = {"horizon": horizon or opts.horizon, "episodes": opts.eval_episodes, "seed": opts.seed,
              **opts.eval_kwargs, **sampling}
    return evaluate(opts.out / RUNS_DIR / (run or label), [str(d) for d in data], opts.out / EVAL_DIR / label, **kwargs)


def _row(label: str, trained: dict[str, Any], evaluated: dict[str, Any], *, embodiment: str | None = None) -> dict[str, Any]:
    scores = evaluated["overall"] if embodiment is None else evaluated["per_embodiment"][embodiment]
    keys = ("psnr", "ssim", "delta_psnr", "perplexity", "fps", "recon_psnr", "lpips", "fvd")
    return {"label": label, **{k: scores.get(k) for k in keys}, **trained}


def single_stream_fps(run: Path, data: Sequence[Path], *, frames: int, seed: int = 0,
                      diffusion_steps: int | None = None) -> float:
    """Frames per second of one environment (batch 1) rolled out from a held-out clip, decoding excluded.

    This is the paper's speed measure (generation wall time per frame); the batched FPS in
    ``evaluate`` is throughput over many clips instead.
    """
    import torch

    import hma
    from hma.data.store import EpisodeStore
    from hma.data.windows import split_episodes
    from hma.eval.runner import EvalOptions, _clips, _encode, _generator, generate_autoregressive

    loaded = hma.load(run)
    store = next(s for s in map(EpisodeStore, data) if s.embodiment in loaded.embodiments)
    spec = loaded.embodiments[store.embodiment]
    _, held = split_episodes(store.num_episodes, float(loaded.config.get("train", {}).get("holdout", 0.1)))
    device = next(loaded.model.parameters()).device
    clips = _clips(store, spec, frame_hz=float(loaded.config["model"]["frame_hz"]), length=frames + 1, held=held)
    tokens = _encode(loaded.tokenizer, clips.frames[:1], device)  # (1, L, ...)
    actions = torch.from_numpy(clips.actions[:1]).to(device)  # (1, L, k*A)
    gen = _generator(loaded, store.embodiment, EvalOptions(diffusion_steps=diffusion_steps), passive=False)
    generate_autoregressive(gen, tokens[:, :2], actions[:, :2], 1, seed=seed)  # warm-up (allocations, kernels)
    _, seconds = generate_autoregressive(gen, tokens, actions, 1, seed=seed)
    return frames / seconds


# -- recipes ------------------------------------------------------------------------------

@dataclass
class Recipe:
    title: str
    claim: str
    columns: list[tuple[str, str, str]]  # (row key, column title, format)
    run: Callable[[ExperimentOptions], tuple[list[dict[str, Any]], list[str]]]  # -> rows, findings


QUALITY = [("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"), ("delta_psnr", "ΔPSNR (dB)", "{:.2f}")]
TRAINING = [("steps", "steps", "{:d}"), ("train_seconds", "train s", "{:.0f}"), ("params", "params", "{:,}")]


def _better(a: float | None, b: float | None, *, higher: bool) -> str:
    if a is None or b is None:
        return "not measured"
    return "yes" if (a > b if higher else a < b) else "**no**"


def _actions(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    tok = _need_tokenizer(opts, "discrete", "actions")
    data = [d for ds in _datasets_by_embodiment(opts.data).values() for d in ds]
    _tokenize(data, tok)
    rows = []
    for setting, label in (("video", "passive video"), ("forward", "forward dynamics"), ("full", "full dynamics")):
        trained = _train(opts, setting, data, tokenizer=tok, setting=setting)
        rows.append(_row(label, trained, _evaluate(opts, setting, data)))
    passive = rows[0]
    findings = [f"{r['label']} vs passive video: higher ΔPSNR {_better(r['delta_psnr'], passive['delta_psnr'], higher=True)}, "
                f"lower perplexity {_better(r['perplexity'], passive['perplexity'], higher=False)}, "
                f"higher PSNR {_better(r['psnr'], passive['psnr'], higher=True)}" for r in rows[1:]]
    return rows, findings


def _transfer(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    tok = _need_tokenizer(opts, "discrete", "transfer")
    groups = _datasets_by_embodiment(opts.data)
    if len(groups) < 2:
        raise DataError(f"experiment 'transfer' needs datasets of at least 2 embodiments, got {', '.join(groups) or 'none'}")
    target = opts.target or sorted(groups)[-1]
    if target not in groups:
        raise ConfigError(f"--target {target!r} is not an embodiment of the data, expected one of {', '.join(sorted(groups))}")
    others = [d for name, ds in sorted(groups.items()) if name != target for d in ds]
    held = groups[target]
    _tokenize([*others, *held], tok)
    pre = _train(opts, "pretrained", others, tokenizer=tok)
    rows = []
    finetuned = _train(opts, "finetuned", held, init_from=Path(pre["run"]))
    rows.append(_row(f"pre-trained on {len(groups) - 1} others + fine-tuned", finetuned,
                     _evaluate(opts, "finetuned", held), embodiment=target))
    scratch = _train(opts, "scratch", held, tokenizer=tok)
    rows.append(_row("from scratch", scratch, _evaluate(opts, "scratch", held), embodiment=target))
    ft, sc = rows
    findings = [f"held-out embodiment: {target}; pre-training on {', '.join(n for n in sorted(groups) if n != target)} "
                f"with the same budget ({pre['steps']} steps)",
                f"pre-trained + fine-tuned vs scratch: higher PSNR {_better(ft['psnr'], sc['psnr'], higher=True)}, "
                f"lower perplexity {_better(ft['perplexity'], sc['perplexity'], higher=False)}"]
    return rows, findings


def _methods(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    discrete = _need_tokenizer(opts, "discrete", "methods")
    continuous = _need_tokenizer(opts, "continuous", "methods")
    data = [d for ds in _datasets_by_embodiment(opts.data).values() for d in ds]
    _tokenize(data, discrete)
    _tokenize(data, continuous)
    rows = []
    for label, tok, model in (("MaskGIT", discrete, "hma"), ("MAR", continuous, "hma"),
                              ("diffusion (DiT, DDIM)", continuous, "diffusion")):
        name = label.split()[0].lower()
        trained = _train(opts, name, data, tokenizer=tok, model=model)
        row = _row(label, trained, _evaluate(opts, name, data))
        row["fps_single"] = single_stream_fps(opts.out / RUNS_DIR / name, data, frames=8, seed=opts.seed,
                                              diffusion_steps=opts.eval_kwargs.get("diffusion_steps"))
        rows.append(row)
    fastest = max(rows, key=lambda r: r["fps_single"])
    best = max(rows, key=lambda r: r["psnr"])
    diffusion = rows[-1]
    findings = [f"fastest generation (batch 1): {fastest['label']} at {fastest['fps_single']:.1f} FPS; "
                + ", ".join(f"{r['label']} {r['fps_single'] / diffusion['fps_single']:.1f}x" for r in rows[:-1])
                + " the diffusion baseline's speed",
                f"highest PSNR: {best['label']} at {best['psnr']:.2f} dB (compare with each tokenizer's own "
                f"reconstruction PSNR, the ceiling of its row)"]
    return rows, findings


def _injection(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    tok = _need_tokenizer(opts, "discrete", "injection")
    data = [d for ds in _datasets_by_embodiment(opts.data).values() for d in ds]
    _tokenize(data, tok)
    rows = []
    for mode in ("concat", "modulate", "add", "cross_attention"):
        trained = _train(opts, mode, data, tokenizer=tok, injection=mode)
        rows.append(_row(mode, trained, _evaluate(opts, mode, data)))
    best_d = max(rows, key=lambda r: r["delta_psnr"])
    best_p = max(rows, key=lambda r: r["psnr"])
    return rows, [f"highest ΔPSNR: {best_d['label']} ({best_d['delta_psnr']:.2f} dB); "
                  f"highest PSNR: {best_p['label']} ({best_p['psnr']:.2f} dB)"]


@dataclass(frozen=True)
class Lever:
    """One row of the levers recipe: the demo's recipe with some settings changed.

    ``train``/``model`` change the TrainConfig/ModelConfig, ``sampling`` the evaluation
    (unmasking steps, precision); ``budget`` multiplies the training budget. A row that
    changes only the sampling is scored on the run named ``reuse`` instead of training anew.
    """

    label: str
    name: str
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    budget: float = 1.0
    reuse: str | None = None


BASE_HZ = 10.0
# What `hma demo` trains with (hma.demo.DemoBudget), minus the model size that --scale sets.
DEMO_RECIPE: dict[str, Any] = {"setting": "forward", "frame_hz": BASE_HZ}
DEMO_MODEL: dict[str, Any] = {"changed_token_weight": 10.0}
# The first row is the demo's recipe; each other row changes one thing. Rows at another
# frame rate are scored over the same seconds of future.
LEVERS: list[Lever] = [
    Lever("demo recipe: forward, 10 Hz, changed tokens x10", "demo", DEMO_RECIPE, DEMO_MODEL),
    Lever("changed tokens x1 (unweighted)", "unweighted", DEMO_RECIPE, {"changed_token_weight": 1.0}),
    Lever("changed tokens x20", "changed_x20", DEMO_RECIPE, {"changed_token_weight": 20.0}),
    Lever("full dynamics (actions also predicted)", "full", {**DEMO_RECIPE, "setting": "full"}, DEMO_MODEL),
    Lever("5 Hz, action chunks of 2", "5hz", {**DEMO_RECIPE, "frame_hz": 5.0}, DEMO_MODEL),
    Lever("4 unmasking steps", "demo_4_steps", sampling={"unmask_steps": 4}, reuse="demo"),
    Lever("int8 generation", "demo_int8", sampling={"precision": "int8"}, reuse="demo"),
    Lever("twice the training steps", "twice", DEMO_RECIPE, DEMO_MODEL, budget=2.0),
]


def _branched_data(opts: ExperimentOptions, recipe: str) -> list[Path]:
    """Every dataset of ``opts.data``; a one-line error when none has counterfactual branches."""
    from hma.data.sim.branches import open_branches

    data = [d for ds in _datasets_by_embodiment(opts.data).values() for d in ds]
    if not any(open_branches(d) for d in data):
        raise DataError(f"experiment {recipe!r} scores runs against counterfactual branches, and the data has none; "
                        "expected datasets written by `hma data generate` (DATASET/counterfactual/)")
    return data


def _levers(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    tok = _need_tokenizer(opts, "discrete", "levers")
    data = _branched_data(opts, "levers")
    _tokenize(data, tok)
    base_horizon = opts.horizon or 8
    rows, findings = [], []
    trained_runs: dict[str, dict[str, Any]] = {}
    by_name = {lever.name: lever for lever in LEVERS}
    for lever in LEVERS:
        label = lever.label
        hz = by_name[lever.reuse or lever.name].train.get("frame_hz", BASE_HZ)
        if lever.reuse is not None:
            trained = trained_runs[lever.reuse]
        else:
            trained = _train(opts, lever.name, data, tokenizer=tok, model_changes=lever.model,
                             budget=opts.budget.scaled(lever.budget), **lever.train)
        trained_runs[lever.name] = trained
        evaluated = _evaluate(opts, lever.name, data, horizon=max(1, round(base_horizon * hz / BASE_HZ)),
                              run=lever.reuse, **lever.sampling)
        cf = evaluated["overall"].get("counterfactual")
        if cf is None:
            raise DataError(f"no counterfactual branch fits the evaluation of {label!r} ({hz:g} Hz); expected "
                            "branches with enough frames after them (a shorter --horizon)")
        row = _row(label, trained, evaluated)
        row.update({f"cf_{k}": v for k, v in cf.items()})
        row["robots"] = f"{cf['delta_psnr_above_zero']}/{cf['half_of_ceiling']}/{cf['follows_other_actions']} of {cf['embodiments']}"
        rows.append(row)
        per = evaluated["per_embodiment"]
        findings.append(f"{label}: ΔPSNR (95% interval) per robot " + ", ".join(
            f"{n} {r['counterfactual']['delta_psnr']['mean']:.2f} [{r['counterfactual']['delta_psnr']['lo']:.2f}, "
            f"{r['counterfactual']['delta_psnr']['hi']:.2f}]" for n, r in per.items() if "counterfactual" in r))
    return rows, findings


def _interval(scores: dict[str, Any]) -> str:
    return f"{scores['mean']:.2f} [{scores['lo']:.2f}, {scores['hi']:.2f}]"


def _world_model(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    from hma.eval.counterfactual import follows_other_actions

    tok = _need_tokenizer(opts, "discrete", "world-model")
    data = _branched_data(opts, "world-model")
    _tokenize(data, tok)
    trained = _train(opts, "demo_recipe", data, tokenizer=tok, model_changes=DEMO_MODEL, **DEMO_RECIPE)
    evaluated = _evaluate(opts, "demo_recipe", data, horizon=opts.horizon or 8)
    rows = []
    for name, r in evaluated["per_embodiment"].items():
        cf = r.get("counterfactual")
        if cf is None:
            continue
        rows.append({"label": name, "delta": _interval(cf["delta_psnr"]), "ceiling": cf["ceiling"]["mean"],
                     "fraction": cf["fraction_of_ceiling"], "psnr_true": cf["psnr_true"]["mean"],
                     "psnr_cf": cf["psnr_counterfactual"]["mean"], "psnr_cross": cf["psnr_true_vs_counterfactual"]["mean"],
                     "follows": "yes" if follows_other_actions(cf) else "no",
                     "motion": (cf.get("motion_psnr_true") or {}).get("mean"),
                     "tokenizer_motion": (cf.get("tokenizer_motion_psnr") or {}).get("mean"),
                     "clips": cf["clips"], **trained})
    summary = evaluated["overall"].get("counterfactual")
    if summary is None:
        raise DataError("experiment 'world-model' scores the run against counterfactual branches, and no branch fits "
                        "the evaluation; expected datasets written by `hma data generate` (DATASET/counterfactual/)")
    n = summary["embodiments"]
    findings = [
        f"{trained['steps']} optimizer steps in {trained['train_seconds'] / 60:.1f} min on {n} robots",
        f"ΔPSNR interval above 0 for {summary['delta_psnr_above_zero']} of {n} robots; ΔPSNR >= 50% of the ceiling "
        f"for {summary['half_of_ceiling']}; follows the other actions for {summary['follows_other_actions']} "
        f"(mean ΔPSNR {summary['mean_delta_psnr']:.2f} dB of a mean ceiling {summary['mean_ceiling']:.2f} dB)",
        "follows: the prediction under the other actions is within 1 dB of the true-action PSNR and closer to the "
        "simulator's other future than the true-action prediction is",
    ]
    return rows, findings


PERPLEXITY = ("perplexity", "perplexity", "{:.1f}")
RECIPES: dict[str, Recipe] = {
    "actions": Recipe(
        "Action conditioning: passive video vs forward vs full dynamics",
        "Action-conditioned models beat passive video models on fidelity and controllability.",
        [*QUALITY, PERPLEXITY, *TRAINING], _actions),
    "transfer": Recipe(
        "Transfer to a held-out embodiment: pre-trained + fine-tuned vs from scratch",
        "Pre-trained then fine-tuned beats from scratch (paper: PSNR 22.04 vs 21.01, perplexity 189.8 vs 305.9).",
        [*QUALITY, PERPLEXITY, *TRAINING], _transfer),
    "methods": Recipe(
        "Methods: MaskGIT vs MAR vs video diffusion at equal training compute",
        "Masked autoregression generates frames far faster than a diffusion baseline of the same trunk "
        "(paper Table 1) at comparable quality.",
        [*QUALITY, ("recon_psnr", "tokenizer PSNR (dB)", "{:.2f}"), ("fps_single", "FPS (batch 1)", "{:.1f}"),
         ("fps", "FPS (batched)", "{:.1f}"), PERPLEXITY, *TRAINING], _methods),
    "injection": Recipe(
        "Action injection: concat vs modulate vs add vs cross-attention",
        "The paper ablates the four ways of injecting actions; its default is concat + modulate.",
        [*QUALITY, PERPLEXITY, *TRAINING], _injection),
    "levers": Recipe(
        "Levers: what makes a model follow its actions in minutes, against the simulator",
        "A world model must follow actions it was not shown (paper: action-conditioned models are more "
        "controllable); scored by ΔPSNR against counterfactual branches of the simulator, beside the ceiling "
        "this tokenizer allows.",
        [("cf_mean_delta_psnr", "ΔPSNR (dB)", "{:.2f}"), ("cf_mean_ceiling", "ceiling (dB)", "{:.2f}"),
         ("cf_mean_fraction_of_ceiling", "fraction", "{:.2f}"),
         ("robots", "robots: ΔPSNR>0 / ≥50% ceiling / follows", "{}"), ("psnr", "PSNR (dB)", "{:.2f}"),
         PERPLEXITY, *TRAINING], _levers),
    "world-model": Recipe(
        "One world model on every robot, against the simulator's counterfactual branches",
        "A world model trained on heterogeneous robots follows each robot's actions (paper: ΔPSNR > 0 for the "
        "action-conditioned model); here per robot, with the ceiling this tokenizer allows.",
        [("delta", "ΔPSNR (dB) [95%]", "{}"), ("ceiling", "ceiling (dB)", "{:.2f}"), ("fraction", "fraction", "{:.2f}"),
         ("psnr_true", "PSNR true actions", "{:.2f}"), ("psnr_cf", "PSNR other actions", "{:.2f}"),
         ("psnr_cross", "PSNR true pred. vs other future", "{:.2f}"), ("follows", "follows", "{}"),
         ("motion", "motion PSNR", "{:.2f}"), ("tokenizer_motion", "tokenizer motion PSNR", "{:.2f}"),
         ("clips", "clips", "{:d}")], _world_model),
}


# -- results files --------------------------------------------------------------------------

def _markers(name: str) -> tuple[str, str]:
    return f"<!-- hma-experiment:{name}:begin -->", f"<!-- hma-experiment:{name}:end -->"


def results_date() -> str:
    """The date a results section records: UTC, to the minute."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def shown_command(argv: Sequence[str]) -> str:
    """The ``hma`` command line a results section quotes, from the arguments as typed."""
    import shlex

    return "hma " + shlex.join(argv)


def update_results_section(path: Path, name: str, body: str) -> None:
    """Replace experiment ``name``'s section of ``path`` (creating the file), atomically.

    Sections keep the order of :data:`RESULT_SECTIONS`. Recipes finishing at the same time are
    serialized by a lock on the folder (its inode, unlike the file's, survives the atomic
    rename, and no lock file is left behind), so neither loses the other's section.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        text = path.read_text() if path.exists() else f"{RESULTS_TITLE}\n{RESULTS_INTRO}"
        sections = {}
        for other in RESULT_SECTIONS:
            begin, end = _markers(other)
            m = re.search(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", text, flags=re.S)
            if m:
                sections[other] = m.group(0).rstrip("\n")
                text = text[: m.start()] + text[m.end():]
        begin, end = _markers(name)
        sections[name] = f"{begin}\n{body.strip()}\n{end}"
        head = text.rstrip("\n") + "\n"
        ordered = [sections[n] for n in RESULT_SECTIONS if n in sections]
        atomic_write_bytes(path, (head + "\n" + "\n\n".join(ordered) + "\n").encode())
    finally:
        os.close(folder)  # closing releases the lock


def _section(name: str, recipe: Recipe, result: dict[str, Any]) -> str:
    header = ["run", *(title for _, title, _ in recipe.columns)]
    rows = [[r["label"], *(format_value(r.get(k), fmt) for k, _, fmt in recipe.columns)] for r in result["rows"]]
    opts = result["options"]
    lines = [
        f"## {name}: {recipe.title}\n",
        f"Claim (paper): {recipe.claim}\n",
        f"Command ({result['date']}):\n",
        f"```\n{result['command']}\n```\n",
        f"Budget: {result['budget']}; scale `{opts['scale']}` ({result['scale_config']}); batch {opts['batch_size']}, "
        f"lr {opts['lr']:g}; evaluated on held-out episodes ({result['eval']}); {result['threads']} CPU thread(s).\n",
        markdown_table(header, rows),
        "Findings:\n",
        "\n".join(f"- {f}" for f in result["findings"]) + "\n",
    ]
    return "\n".join(lines)


def run_experiment(name: str, opts: ExperimentOptions) -> dict[str, Any]:
    """Run recipe ``name``; writes OUT/NAME/results.{json,md} and its section of ``opts.results_md``."""
    if name not in RECIPES:
        raise ConfigError(f"experiment {name!r} is unknown, expected one of {', '.join(EXPERIMENTS)}")
    recipe = RECIPES[name]
    opts = dataclasses.replace(opts, out=opts.out / name)
    if (opts.out / RUNS_DIR).exists() and any((opts.out / RUNS_DIR).iterdir()):
        raise ConfigError(f"{opts.out / RUNS_DIR} already holds runs; expected a new --out folder (or remove it)")
    started = time.perf_counter()
    rows, findings = recipe.run(opts)
    first_eval = next(iter(sorted((opts.out / EVAL_DIR).iterdir())))
    options = _read_eval_options(first_eval)
    result = {
        "experiment": name,
        "command": opts.command,
        "date": results_date(),
        "budget": opts.budget.describe(),
        "scale_config": ", ".join(f"{k} {v}" for k, v in SCALES[opts.scale].items()),
        "options": {"scale": opts.scale, "batch_size": opts.batch_size, "lr": opts.lr, "seed": opts.seed,
                    "data": opts.data, "tokenizers": opts.tokenizers, "target": opts.target},
        "eval": (f"{options['mode']} mode, {options['context']} context + {options['horizon']} generated frames, "
                 f"up to {options['episodes']} episode(s) per embodiment, ΔPSNR over {options['random_draws']} "
                 f"random-action draws, {options['unmask_steps']} unmasking steps"),
        "threads": _threads(),
        "rows": rows,
        "findings": findings,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(opts.out / RESULTS_FILE, result)
    section = _section(name, recipe, result)
    atomic_write_bytes(opts.out / TABLE_FILE, section.encode())
    update_results_section(opts.results_md, name, section)
    return result


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _read_eval_options(eval_dir: Path) -> dict[str, Any]:
    from hma.eval.runner import METRICS_FILE
    from hma.io import read_json

    return read_json(eval_dir / METRICS_FILE, "evaluation metrics")["options"]

