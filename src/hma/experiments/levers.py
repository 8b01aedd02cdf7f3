"""The recipes scored against the simulator's counterfactual branches: ``levers`` (the demo's
recipe with one change a row) and ``world-model`` (the demo's recipe on every robot, a row a robot)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hma.config import RECIPE
from hma.data.windows import DEFAULT_FRAME_HZ
from hma.errors import DataError
from hma.experiments.runs import (ExperimentOptions, datasets_by_embodiment, evaluate_run, need_tokenizer,
                                      score_row, tokenize, train_run)

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
    episodes: int | None = None  # training episodes per robot (the first ones), instead of all of them


BASE_HZ = DEFAULT_FRAME_HZ
# What `hma demo` trains with (hma's recipe, hma.config.RECIPE), minus the model size that --scale sets.
DEMO_RECIPE: dict[str, Any] = {"setting": RECIPE.setting, "frame_hz": BASE_HZ}
DEMO_MODEL: dict[str, Any] = {"changed_token_weight": RECIPE.changed_token_weight}
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


def branched_data(opts: ExperimentOptions, recipe: str) -> list[Path]:
    """Every dataset of ``opts.data``; a one-line error when none has counterfactual branches."""
    from hma.data.sim.branches import open_branches

    data = [d for ds in datasets_by_embodiment(opts.data).values() for d in ds]
    if not any(open_branches(d) for d in data):
        raise DataError(f"experiment {recipe!r} scores runs against counterfactual branches, and the data has none; "
                        "expected datasets written by `hma data generate` (DATASET/counterfactual/)")
    return data


# The demo trains on 16 episodes per robot, 14 of them after the hold-out.
DEMO_TRAINING_EPISODES = 14
# What makes a model generalize to episodes it has not seen, each row the demo's recipe with one
# change, on a pre-training suite (`hma data generate --suite pretrain`), same steps, same clips.
GENERALIZATION_MODEL: dict[str, Any] = {**DEMO_MODEL, "action_dropout": 0.15}
GENERALIZATION: list[Lever] = [
    Lever("the demo's data: 14 training episodes per robot", "demo_data", DEMO_RECIPE, DEMO_MODEL,
          episodes=DEMO_TRAINING_EPISODES),
    Lever("every training episode of the suite", "suite", DEMO_RECIPE, DEMO_MODEL),
    Lever("changed tokens x1 (unweighted)", "unweighted", DEMO_RECIPE, {"changed_token_weight": 1.0}),
    Lever("changed tokens x10, logit-adjusted at sampling", "adjusted", sampling={"logit_adjustment": 1.0},
          reuse="suite"),
    Lever("action dropout 0.15", "dropout", DEMO_RECIPE, GENERALIZATION_MODEL),
    Lever("action dropout 0.15, guidance 2", "guided", sampling={"action_guidance": 2.0}, reuse="dropout"),
    Lever("context corruption up to 0.5 (from 0.2)", "corrupt", DEMO_RECIPE, {**DEMO_MODEL, "corrupt_max": 0.5}),
    Lever("4 blocks (from 2)", "deeper", DEMO_RECIPE, {**DEMO_MODEL, "num_blocks": 4}),
    Lever("the past fully visible on half the samples", "visible_past", DEMO_RECIPE,
          {**DEMO_MODEL, "visible_past": 0.5}),
]


# The rows that moved at 2,000 steps, at more steps (the command sets them, e.g. --steps 8000):
# the data, the weighting and its correction, action dropout with guidance.
LONG_ROWS = ("demo_data", "suite", "unweighted", "adjusted", "dropout", "guided")
GENERALIZATION_LONG: list[Lever] = [lever for lever in GENERALIZATION if lever.name in LONG_ROWS]


def levers_recipe(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    return _lever_rows(opts, LEVERS, "levers")


TOKEN_ACCURACY_FINDING = ("token accuracy: the last frame of held-out (training) windows predicted in one pass with "
                          "the true past visible; copying the last frame scores the unchanged share")


def generalization_recipe(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    rows, findings = _lever_rows(opts, GENERALIZATION, "generalization")
    return rows, [*findings, TOKEN_ACCURACY_FINDING]


def generalization_long_recipe(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    rows, findings = _lever_rows(opts, GENERALIZATION_LONG, "generalization-long")
    return rows, [*findings, TOKEN_ACCURACY_FINDING]


def _training_fraction(data: list[Path], episodes: int) -> float:
    """The share of each dataset's training episodes that keeps ``episodes`` of the smallest one."""
    from hma.data.store import EpisodeStore
    from hma.data.windows import HOLDOUT, split_episodes

    fewest = min(len(split_episodes(EpisodeStore(d).num_episodes, HOLDOUT)[0]) for d in data)
    return min(1.0, episodes / fewest)


def _lever_rows(opts: ExperimentOptions, levers: list[Lever], recipe: str) -> tuple[list[dict[str, Any]], list[str]]:
    tok = need_tokenizer(opts, "discrete", recipe)
    data = branched_data(opts, recipe)
    tokenize(data, tok)
    base_horizon = opts.horizon or 8
    rows, findings = [], []
    trained_runs: dict[str, dict[str, Any]] = {}
    by_name = {lever.name: lever for lever in levers}
    for lever in levers:
        label = lever.label
        hz = by_name[lever.reuse or lever.name].train.get("frame_hz", BASE_HZ)
        if lever.reuse is not None:
            trained = trained_runs[lever.reuse]
        else:
            fraction = {} if lever.episodes is None else {"train_fraction": _training_fraction(data, lever.episodes)}
            trained = train_run(opts, lever.name, data, tokenizer=tok, model_changes=lever.model,
                             budget=opts.budget.scaled(lever.budget), **lever.train, **fraction)
        trained_runs[lever.name] = trained
        evaluated = evaluate_run(opts, lever.name, data, horizon=max(1, round(base_horizon * hz / BASE_HZ)),
                              run=lever.reuse, **lever.sampling)
        cf = evaluated["overall"].get("counterfactual")
        if cf is None:
            raise DataError(f"no counterfactual branch fits the evaluation of {label!r} ({hz:g} Hz); expected "
                            "branches with enough frames after them (a shorter --horizon)")
        row = score_row(label, trained, evaluated)
        row.update({f"cf_{k}": v for k, v in cf.items()})
        row["robots"] = f"{cf['delta_psnr_above_zero']}/{cf['half_of_ceiling']}/{cf['follows_other_actions']} of {cf['embodiments']}"
        accuracy = evaluated["overall"].get("token_accuracy")
        if accuracy is not None:
            row.update({f"tokens_{k}": accuracy["heldout"][k] for k in ("all", "copy", "unchanged", "changed")})
            row["tokens_train_all"] = accuracy["train"]["all"]
        rows.append(row)
        per = evaluated["per_embodiment"]
        findings.append(f"{label}: ΔPSNR (95% interval) per robot " + ", ".join(
            f"{n} {r['counterfactual']['delta_psnr']['mean']:.2f} [{r['counterfactual']['delta_psnr']['lo']:.2f}, "
            f"{r['counterfactual']['delta_psnr']['hi']:.2f}]" for n, r in per.items() if "counterfactual" in r))
    return rows, findings


def interval(scores: dict[str, Any]) -> str:
    return f"{scores['mean']:.2f} [{scores['lo']:.2f}, {scores['hi']:.2f}]"


def world_model_recipe(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    from hma.eval.counterfactual import follows_other_actions

    tok = need_tokenizer(opts, "discrete", "world-model")
    data = branched_data(opts, "world-model")
    tokenize(data, tok)
    trained = train_run(opts, "demo_recipe", data, tokenizer=tok, model_changes=DEMO_MODEL, **DEMO_RECIPE)
    evaluated = evaluate_run(opts, "demo_recipe", data, horizon=opts.horizon or 8)
    rows = []
    for name, r in evaluated["per_embodiment"].items():
        cf = r.get("counterfactual")
        if cf is None:
            continue
        rows.append({"label": name, "delta": interval(cf["delta_psnr"]), "ceiling": cf["ceiling"]["mean"],
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
