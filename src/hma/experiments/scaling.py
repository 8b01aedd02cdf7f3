"""``hma experiment scaling --axis embodiments|trajectories|size``: the paper's scaling curves
(Fig. 6: more datasets, more trajectories, larger models) at CPU scale.

Every point of an axis trains the demo's recipe (:data:`hma.experiments.levers.DEMO_RECIPE`) with the
same optimizer steps and batch, changing one thing, and is scored on the same held-out clips:

- ``embodiments``: 1, 3, 6, 12 robots (as many as the data has). The evaluated robot
  (``--target``, default the first by name) is in every point; the others are added in name
  order. Does training beside other robots help the one evaluated, at the same steps?
- ``trajectories``: the first 12.5%, 25%, 50% and 100% of each robot's training episodes
  (``TrainConfig.train_fraction``); the held-out episodes are the same at every point.
- ``size``: four trunks (blocks x width) from 0.1M to a few M parameters.

Each row: held-out perplexity, PSNR, ΔPSNR against random actions with its 95% bootstrap
interval over clips, and, where the data has the simulator's counterfactual branches, the
counterfactual ΔPSNR and PSNR. The findings compare the last point with the first, paired per
clip, so a trend is called real only when its interval excludes 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hma.errors import ConfigError, DataError
from hma.experiments.runs import (ExperimentOptions, clip_values, datasets_by_embodiment, evaluate_run,
                                      interval_bounds, interval_text, need_tokenizer, paired_difference, score_row,
                                      tokenize, train_run)
from hma.experiments.levers import DEMO_MODEL, DEMO_RECIPE
from hma.io import save_figure_png

AXES = ("embodiments", "trajectories", "size")
EMBODIMENT_COUNTS = (1, 3, 6, 12)
TRAJECTORY_FRACTIONS = (0.125, 0.25, 0.5, 1.0)
TRUNKS = ((2, 64), (2, 128), (4, 128), (6, 192))  # (num_blocks, width)
X_TITLES = {"embodiments": "robots trained on", "trajectories": "training episodes (all robots)",
            "size": "parameters"}


def recipe_name(axis: str) -> str:
    """The section (and OUT folder) of one axis: ``scaling-embodiments`` etc."""
    if axis not in AXES:
        raise ConfigError(f"scaling axis {axis!r} is unknown, expected one of {', '.join(AXES)}")
    return f"scaling-{axis}"


def plot_file(axis: str) -> str:
    return f"{recipe_name(axis)}.png"


@dataclass(frozen=True)
class Point:
    """One trained run of an axis: its data, and what it changes in the demo's recipe."""

    label: str
    name: str
    data: list[Path]
    x: float | None = None  # None: the run's parameter count (size axis)
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)


def axis_points(axis: str, groups: dict[str, list[Path]], *, target: str | None = None) -> tuple[list[Point], list[Path]]:
    """The points of ``axis`` on the datasets ``groups`` (embodiment -> folders) and the datasets
    every point is evaluated on."""
    if not groups:
        raise DataError("experiment 'scaling' found no dataset in --data")
    everything = [d for _, ds in sorted(groups.items()) for d in ds]
    if axis == "embodiments":
        target = target or sorted(groups)[0]
        if target not in groups:
            raise ConfigError(f"--target {target!r} is not an embodiment of the data, expected one of {', '.join(sorted(groups))}")
        order = [target, *(n for n in sorted(groups) if n != target)]
        counts = sorted({c for c in EMBODIMENT_COUNTS if c < len(order)} | {len(order)})
        points = [Point(f"{c} robot{'s' if c > 1 else ''}", f"robots_{c}", [d for n in order[:c] for d in groups[n]], x=c)
                  for c in counts]
        return points, groups[target]
    if axis == "trajectories":
        points = [Point(f"{f:.1%} of training episodes", f"episodes_{f:g}", everything,
                        x=_training_episodes(everything, f), train={"train_fraction": f}) for f in TRAJECTORY_FRACTIONS]
        return points, everything
    if axis == "size":
        points = [Point(f"{b} blocks x {w}", f"trunk_{b}x{w}", everything, model={"num_blocks": b, "width": w})
                  for b, w in TRUNKS]
        return points, everything
    raise ConfigError(f"scaling axis {axis!r} is unknown, expected one of {', '.join(AXES)}")


def _training_episodes(datasets: list[Path], fraction: float) -> int:
    """How many episodes a run with ``train_fraction`` trains on, over ``datasets`` (as hma.train keeps them)."""
    from hma.data.store import EpisodeStore
    from hma.data.windows import HOLDOUT, split_episodes

    return sum(max(1, round(fraction * len(split_episodes(EpisodeStore(d).num_episodes, HOLDOUT)[0]))) for d in datasets)


def scaling_recipe(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    axis = opts.axis or ""
    recipe_name(axis)
    tok = need_tokenizer(opts, "discrete", "scaling")
    points, evaluated_on = axis_points(axis, datasets_by_embodiment(opts.data), target=opts.target)
    tokenize([d for p in points for d in p.data], tok)
    rows, psnrs, deltas = [], [], []
    for p in points:
        trained = train_run(opts, p.name, p.data, tokenizer=tok, model_changes={**DEMO_MODEL, **p.model},
                            **{**DEMO_RECIPE, **p.train})
        evaluated = evaluate_run(opts, p.name, evaluated_on, horizon=opts.horizon or 8)
        deltas.append(clip_values(evaluated))
        psnrs.append(clip_values(evaluated, "psnr_by_clip_and_horizon").mean(axis=1))
        row = score_row(p.label, trained, evaluated)
        bounds = interval_bounds(deltas[-1], seed=opts.seed)
        row.update(x=p.x if p.x is not None else trained["params"], clips=evaluated["overall"]["clips"],
                   delta_interval=interval_text(deltas[-1], bounds=bounds), delta_lo_hi=bounds,
                   **_counterfactual(evaluated))
        rows.append(row)
    robots = sorted({Path(d).name for d in evaluated_on})
    first, last = rows[0]["label"], rows[-1]["label"]
    findings = [
        f"every point: the demo's recipe ({DEMO_RECIPE['setting']} setting), {rows[0]['steps']} optimizer steps, "
        f"evaluated on the same {rows[0]['clips']} held-out clips of {', '.join(robots)}",
        paired_difference(psnrs[-1], psnrs[0], f"PSNR of {last} minus {first}, paired per clip", seed=opts.seed),
        paired_difference(deltas[-1], deltas[0], f"ΔPSNR of {last} minus {first}, paired per clip", seed=opts.seed),
        _trend("perplexity", [r["perplexity"] for r in rows], lower=True),
        _trend("PSNR", [r["psnr"] for r in rows], lower=False),
    ]
    if all(r.get("cf_delta_psnr") is not None for r in rows):
        findings.append(_trend("counterfactual ΔPSNR", [r["cf_delta_psnr"] for r in rows], lower=False))
    _plot(axis, rows, opts.assets / plot_file(axis))
    findings.append(f"![{axis} scaling](assets/{plot_file(axis)})")
    return rows, findings


def _counterfactual(evaluated: dict[str, Any]) -> dict[str, Any]:
    """Counterfactual ΔPSNR (interval when one robot is evaluated) and PSNR, means over the robots."""
    cfs = [r["counterfactual"] for r in evaluated["per_embodiment"].values() if "counterfactual" in r]
    if not cfs:
        return {"cf_delta_psnr": None, "cf_delta": "no branches", "cf_psnr": None}
    mean = float(np.mean([cf["delta_psnr"]["mean"] for cf in cfs]))
    shown = (f"{mean:.2f} [{cfs[0]['delta_psnr']['lo']:.2f}, {cfs[0]['delta_psnr']['hi']:.2f}]" if len(cfs) == 1
             else f"{mean:.2f} (mean of {len(cfs)} robots)")
    return {"cf_delta_psnr": mean, "cf_delta": shown,
            "cf_psnr": float(np.mean([cf["psnr_counterfactual"]["mean"] for cf in cfs]))}


def _trend(what: str, values: list[float | None], *, lower: bool) -> str:
    if any(v is None for v in values):
        return f"{what}: not measured at every point"
    steps = np.diff(np.asarray(values, dtype=np.float64))
    better = steps < 0 if lower else steps > 0
    shape = ("improves at every step" if better.all() else "gets worse at every step" if (~better).all()
             else f"improves at {int(better.sum())} of {len(steps)} steps")
    return f"{what}: " + " -> ".join(f"{v:.2f}" for v in values) + f" ({shape}; no interval: one value per run)"


COLUMNS: list[tuple[str, str, str]] = [
    ("x", "x", "{:,}"), ("perplexity", "perplexity", "{:.1f}"), ("psnr", "PSNR (dB)", "{:.2f}"),
    ("delta_interval", "ΔPSNR [95%] over clips", "{}"), ("cf_delta", "counterfactual ΔPSNR", "{}"),
    ("cf_psnr", "counterfactual PSNR", "{:.2f}"), ("clips", "clips", "{:d}"), ("steps", "steps", "{:d}"),
    ("train_seconds", "train s", "{:.0f}"), ("params", "params", "{:,}"),
]


def _tick(value: float, axis: str) -> str:
    return f"{value / 1e6:.2g}M" if axis == "size" else f"{value:g}"


def _plot(axis: str, rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray([r["x"] for r in rows], dtype=np.float64)
    panels = [("perplexity", "held-out perplexity", None), ("psnr", "PSNR (dB)", None),
              ("delta_psnr", "ΔPSNR (dB), 95% interval", "delta_lo_hi"), ("cf_delta_psnr", "counterfactual ΔPSNR (dB)", None)]
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.2), dpi=110)
    for ax, (key, title, bounds) in zip(axes, panels):
        y = np.asarray([np.nan if r.get(key) is None else r[key] for r in rows], dtype=np.float64)
        if bounds:
            lo_hi = np.asarray([r[bounds] for r in rows], dtype=np.float64)  # (P, 2)
            ax.errorbar(x, y, yerr=[y - lo_hi[:, 0], lo_hi[:, 1] - y], fmt="o-", capsize=3)
        else:
            ax.plot(x, y, "o-")
        ax.set_xscale("log")
        ax.set_xticks(x, [_tick(v, axis) for v in x])
        ax.minorticks_off()
        ax.set_xlabel(X_TITLES[axis])
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Scaling in {axis} (same optimizer steps per point, same held-out clips)", fontsize=10)
    fig.tight_layout()
    save_figure_png(fig, path)
