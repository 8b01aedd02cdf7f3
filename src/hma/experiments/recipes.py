"""``hma experiment NAME``: small recipes that reproduce the paper's comparisons at CPU scale.

Each recipe trains a few runs with the same budget, evaluates them with
:func:`hma.eval.evaluate` on the held-out episodes, and writes ``OUT/NAME/results.json``,
``OUT/NAME/section.md`` and, given a results file, its own section there (exact command,
date, table, and whether the paper's claim held here):

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
  (the default suite's 12 for the long run), one row per robot against its branches;
- ``long-horizon``: the demo's recipe rolled out to 10x its window, per horizon step against
  the real frames and the copy-last-frame baseline (:mod:`hma.experiments.long_horizon`);
- ``scaling --axis embodiments|trajectories|size``: the demo's recipe at four points of one
  axis, same steps and held-out clips (:mod:`hma.experiments.scaling`); a section per axis.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hma.config import PRESETS
from hma.errors import ConfigError, DataError
from hma.experiments.runs import (EVAL_DIR, RUNS_DIR, ExperimentOptions, clip_values, datasets_by_embodiment,
                                      evaluate_run, interval_text, need_tokenizer, paired_difference, score_row,
                                      single_stream_fps, tokenize, train_run)
from hma.experiments.levers import (DEMO_MODEL, DEMO_RECIPE, generalization_long_recipe, generalization_recipe,
                                    levers_recipe, world_model_recipe)
from hma.experiments.long_horizon import COLUMNS as LONG_HORIZON_COLUMNS, long_horizon_recipe
from hma.eval.report import METRICS_FILE
from hma.experiments.scaling import AXES as SCALING_AXES, COLUMNS as SCALING_COLUMNS, recipe_name as scaling_name, scaling_recipe
from hma.experiments.results import EXPERIMENTS, recipe_section, results_date, update_results_section
from hma.io import atomic_write_bytes, atomic_write_json

RESULTS_FILE = "results.json"
TABLE_FILE = "section.md"


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


RECIPE_NOTE = (f"every run trains the demo's recipe ({DEMO_RECIPE['frame_hz']:g} Hz frames, changed tokens "
               f"x{DEMO_MODEL['changed_token_weight']:g}; setting {DEMO_RECIPE['setting']} unless the row varies it), "
               f"the one that makes a model follow its actions in the levers experiment")


def _actions(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    tok = need_tokenizer(opts, "discrete", "actions")
    data = [d for ds in datasets_by_embodiment(opts.data).values() for d in ds]
    tokenize(data, tok)
    rows, deltas = [], []
    for setting, label in (("video", "passive video"), ("forward", "forward dynamics"), ("full", "full dynamics"),
                           ("mixed", "mixed settings")):
        trained = train_run(opts, setting, data, tokenizer=tok, model_changes=DEMO_MODEL, **{**DEMO_RECIPE, "setting": setting})
        evaluated = evaluate_run(opts, setting, data)
        deltas.append(clip_values(evaluated))
        rows.append({**score_row(label, trained, evaluated), "delta_interval": interval_text(deltas[-1], seed=opts.seed)})
    passive = rows[0]
    findings = [f"{r['label']} vs passive video: higher ΔPSNR {_better(r['delta_psnr'], passive['delta_psnr'], higher=True)}, "
                f"lower perplexity {_better(r['perplexity'], passive['perplexity'], higher=False)}, "
                f"higher PSNR {_better(r['psnr'], passive['psnr'], higher=True)}" for r in rows[1:]]
    findings += [paired_difference(d, deltas[0], f"ΔPSNR of {r['label']} minus passive video, paired per clip",
                                   seed=opts.seed) for r, d in zip(rows[1:], deltas[1:])]
    return rows, [*findings, RECIPE_NOTE]


def _transfer(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    tok = need_tokenizer(opts, "discrete", "transfer")
    groups = datasets_by_embodiment(opts.data)
    if len(groups) < 2:
        raise DataError(f"experiment 'transfer' needs datasets of at least 2 embodiments, got {', '.join(groups) or 'none'}")
    target = opts.target or sorted(groups)[-1]
    if target not in groups:
        raise ConfigError(f"--target {target!r} is not an embodiment of the data, expected one of {', '.join(sorted(groups))}")
    others = [d for name, ds in sorted(groups.items()) if name != target for d in ds]
    held = groups[target]
    tokenize([*others, *held], tok)
    pre = train_run(opts, "pretrained", others, tokenizer=tok)
    rows = []
    finetuned = train_run(opts, "finetuned", held, init_from=Path(pre["run"]))
    rows.append(score_row(f"pre-trained on {len(groups) - 1} others + fine-tuned", finetuned,
                     evaluate_run(opts, "finetuned", held), embodiment=target))
    scratch = train_run(opts, "scratch", held, tokenizer=tok)
    rows.append(score_row("from scratch", scratch, evaluate_run(opts, "scratch", held), embodiment=target))
    ft, sc = rows
    findings = [f"held-out embodiment: {target}; pre-training on {', '.join(n for n in sorted(groups) if n != target)} "
                f"with the same budget ({pre['steps']} steps)",
                f"pre-trained + fine-tuned vs scratch: higher PSNR {_better(ft['psnr'], sc['psnr'], higher=True)}, "
                f"lower perplexity {_better(ft['perplexity'], sc['perplexity'], higher=False)}"]
    return rows, findings


def _methods(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    discrete = need_tokenizer(opts, "discrete", "methods")
    continuous = need_tokenizer(opts, "continuous", "methods")
    data = [d for ds in datasets_by_embodiment(opts.data).values() for d in ds]
    tokenize(data, discrete)
    tokenize(data, continuous)
    rows = []
    for label, tok, model in (("MaskGIT", discrete, "hma"), ("MAR", continuous, "hma"),
                              ("diffusion (DiT, DDIM)", continuous, "diffusion")):
        name = label.split()[0].lower()
        trained = train_run(opts, name, data, tokenizer=tok, model=model)
        row = score_row(label, trained, evaluate_run(opts, name, data))
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
    tok = need_tokenizer(opts, "discrete", "injection")
    data = [d for ds in datasets_by_embodiment(opts.data).values() for d in ds]
    tokenize(data, tok)
    rows = []
    deltas = {}
    for mode in ("concat", "modulate", "add", "cross_attention"):
        trained = train_run(opts, mode, data, tokenizer=tok, model_changes=DEMO_MODEL, **DEMO_RECIPE, injection=mode)
        evaluated = evaluate_run(opts, mode, data)
        deltas[mode] = clip_values(evaluated)
        rows.append({**score_row(mode, trained, evaluated), "delta_interval": interval_text(deltas[mode], seed=opts.seed)})
    best_d = max(rows, key=lambda r: r["delta_psnr"])
    worst_d = min(rows, key=lambda r: r["delta_psnr"])
    best_p = max(rows, key=lambda r: r["psnr"])
    return rows, [f"highest ΔPSNR: {best_d['label']} ({best_d['delta_psnr']:.2f} dB); "
                  f"highest PSNR: {best_p['label']} ({best_p['psnr']:.2f} dB)",
                  paired_difference(deltas[best_d["label"]], deltas[worst_d["label"]],
                                    f"ΔPSNR of {best_d['label']} minus {worst_d['label']}, paired per clip", seed=opts.seed),
                  RECIPE_NOTE]


PERPLEXITY = ("perplexity", "perplexity", "{:.1f}")
DELTA_INTERVAL = ("delta_interval", "ΔPSNR [95%] over clips", "{}")
# The columns of the recipes scored against the simulator's counterfactual branches (levers, generalization).
CF_DELTA = ("cf_mean_delta_psnr", "ΔPSNR (dB)", "{:.2f}")
CF_FRACTION = ("cf_mean_fraction_of_ceiling", "fraction", "{:.2f}")
CF_ROBOTS = ("robots", "robots: ΔPSNR>0 / ≥50% ceiling / follows", "{}")
GENERALIZATION_TITLE = "Generalization: data, objective and sampling levers at equal steps, against the simulator"
GENERALIZATION_CLAIM = ("A world model has to predict episodes it was not trained on; every row scored on the same held-out "
                        "clips, by ΔPSNR against counterfactual branches and by next-frame token accuracy beside copying "
                        "the last frame.")
GENERALIZATION_COLUMNS = [CF_DELTA, CF_FRACTION, CF_ROBOTS, ("tokens_all", "tokens right", "{:.3f}"),
                          ("tokens_copy", "copy", "{:.3f}"), ("tokens_unchanged", "unchanged", "{:.3f}"),
                          ("tokens_changed", "changed", "{:.3f}"), ("tokens_train_all", "tokens right (training)", "{:.3f}"),
                          PERPLEXITY, *TRAINING]

RECIPES: dict[str, Recipe] = {
    "actions": Recipe(
        "Action conditioning: passive video vs forward vs full dynamics vs mixed settings",
        "Action-conditioned models beat passive video models on fidelity and controllability.",
        [*QUALITY, DELTA_INTERVAL, PERPLEXITY, *TRAINING], _actions),
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
        [*QUALITY, DELTA_INTERVAL, PERPLEXITY, *TRAINING], _injection),
    "levers": Recipe(
        "Levers: what makes a model follow its actions in minutes, against the simulator",
        "A world model must follow actions it was not shown (paper: action-conditioned models are more "
        "controllable); scored by ΔPSNR against counterfactual branches of the simulator, beside the ceiling "
        "this tokenizer allows.",
        [CF_DELTA, ("cf_mean_ceiling", "ceiling (dB)", "{:.2f}"), CF_FRACTION, CF_ROBOTS,
         ("psnr", "PSNR (dB)", "{:.2f}"), PERPLEXITY, *TRAINING], levers_recipe),
    "generalization": Recipe(GENERALIZATION_TITLE, GENERALIZATION_CLAIM, GENERALIZATION_COLUMNS, generalization_recipe),
    "generalization-long": Recipe(
        "Generalization at more steps: the levers that moved at 2,000 steps, same data, same clips",
        GENERALIZATION_CLAIM + " Does what moved at 2,000 steps hold when every run trains longer?",
        GENERALIZATION_COLUMNS, generalization_long_recipe),
    "world-model": Recipe(
        "One world model on every robot, against the simulator's counterfactual branches",
        "A world model trained on heterogeneous robots follows each robot's actions (paper: ΔPSNR > 0 for the "
        "action-conditioned model); here per robot, with the ceiling this tokenizer allows.",
        [("delta", "ΔPSNR (dB) [95%]", "{}"), ("ceiling", "ceiling (dB)", "{:.2f}"), ("fraction", "fraction", "{:.2f}"),
         ("psnr_true", "PSNR true actions", "{:.2f}"), ("psnr_cf", "PSNR other actions", "{:.2f}"),
         ("psnr_cross", "PSNR true pred. vs other future", "{:.2f}"), ("follows", "follows", "{}"),
         ("motion", "motion PSNR", "{:.2f}"), ("tokenizer_motion", "tokenizer motion PSNR", "{:.2f}"),
         ("clips", "clips", "{:d}")], world_model_recipe),
    "long-horizon": Recipe(
        "Long horizons: rollouts up to 10x the training window, against copying the last frame",
        "Generated rollouts stay plausible far past the training window (paper: over 100 frames); here scored "
        "against the real frames, per horizon step, beside the copy-last-frame baseline.",
        LONG_HORIZON_COLUMNS, long_horizon_recipe),
    **{scaling_name(axis): Recipe(
        f"Scaling in {axis}: {what}, same optimizer steps, same held-out clips",
        f"Performance improves with more {claim} (paper Fig. 6).",
        SCALING_COLUMNS, scaling_recipe) for axis, what, claim in (
            ("embodiments", "1 to 12 robots trained on, one robot evaluated", "datasets (embodiments)"),
            ("trajectories", "12.5% to 100% of each robot's training episodes", "trajectories"),
            ("size", "four trunk sizes", "model parameters"))},
}


def recipe_key(name: str, axis: str | None = None) -> str:
    """The recipe (and OUT folder, and section) of ``hma experiment NAME``: ``scaling`` has one per ``--axis``."""
    if name == "scaling":
        if axis is None:
            raise ConfigError(f"experiment 'scaling' needs --axis, one of {', '.join(SCALING_AXES)}")
        return scaling_name(axis)
    return name


PRESET_FIELDS = ("num_blocks", "width", "num_heads", "num_frames", "diffusion_width", "diffusion_blocks")


def run_experiment(name: str, opts: ExperimentOptions) -> dict[str, Any]:
    """Run recipe ``name``; writes OUT/NAME/results.json, OUT/NAME/section.md and its section of ``opts.results_file``.

    ``scaling`` runs the recipe of ``opts.axis`` (OUT/scaling-AXIS).
    """
    name = recipe_key(name, opts.axis)
    if name not in RECIPES:
        raise ConfigError(f"experiment {name!r} is unknown, expected one of {', '.join(EXPERIMENTS)}")
    recipe = RECIPES[name]
    opts = dataclasses.replace(opts, out=opts.out / name)
    if not opts.resume and (opts.out / RUNS_DIR).exists() and any((opts.out / RUNS_DIR).iterdir()):
        raise ConfigError(f"{opts.out / RUNS_DIR} already holds runs; expected a new --out folder, or --resume to keep "
                          "the runs and evaluations finished with the same settings")
    started = time.perf_counter()
    rows, findings = recipe.run(opts)
    result = {
        "experiment": name,
        "command": opts.command,
        "date": results_date(),
        "budget": opts.budget.describe(),
        "preset_config": ", ".join(f"{k} {dataclasses.asdict(PRESETS[opts.preset])[k]}" for k in PRESET_FIELDS),
        "options": {"preset": opts.preset, "batch_size": opts.batch_size, "lr": opts.lr, "seed": opts.seed,
                    "data": opts.data, "tokenizers": opts.tokenizers, "target": opts.target, "axis": opts.axis},
        "eval": _eval_description(opts.out),
        "threads": _threads(),
        "rows": rows,
        "findings": findings,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(opts.out / RESULTS_FILE, result)
    _write_section(name, opts.out, result, opts.results_file)
    return result


def render_experiment(name: str, out: Path, results_file: Path, *, axis: str | None = None) -> dict[str, Any]:
    """Write the sections of a finished experiment again from ``OUT/NAME/results.json`` (after a
    change of how sections read); trains and evaluates nothing, keeps the recorded command and date."""
    from hma.io import read_json

    name = recipe_key(name, axis)
    if name not in RECIPES:
        raise ConfigError(f"experiment {name!r} is unknown, expected one of {', '.join(EXPERIMENTS)}")
    folder = Path(out) / name
    result = read_json(folder / RESULTS_FILE, "experiment results")
    if not isinstance(result, dict) or result.get("experiment") != name or not isinstance(result.get("rows"), list):
        raise DataError(f"{folder / RESULTS_FILE} holds no results of experiment {name!r}, expected the file it wrote")
    result["eval"] = _eval_description(folder)
    atomic_write_json(folder / RESULTS_FILE, result)
    _write_section(name, folder, result, Path(results_file))
    return result


def _write_section(name: str, folder: Path, result: dict[str, Any], results_file: Path | None) -> None:
    recipe = RECIPES[name]
    section = recipe_section(name, recipe.title, recipe.claim, recipe.columns, result)
    atomic_write_bytes(folder / TABLE_FILE, section.encode())
    if results_file is not None:
        update_results_section(results_file, name, section)


def _eval_description(folder: Path) -> str:
    """How the recipe's first row was evaluated (the first evaluation written), for the section's header."""
    first = min((folder / EVAL_DIR).iterdir(), key=lambda p: (p / METRICS_FILE).stat().st_mtime)
    o = _read_eval_options(first)
    return (f"{o['mode']} mode, {o['context']} context + {o['horizon']} generated frames, up to {o['episodes']} "
            f"episode(s) per embodiment, ΔPSNR over {o['random_draws']} random-action draws, "
            f"{o['unmask_steps']} unmasking steps")


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _read_eval_options(eval_dir: Path) -> dict[str, Any]:
    from hma.io import read_json

    return read_json(eval_dir / METRICS_FILE, "evaluation metrics")["options"]
