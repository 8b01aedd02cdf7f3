"""``hma experiment long-horizon``: how rollouts far past the training window hold up.

The demo's recipe trains one model on every robot of ``--data``; its held-out episodes are
then rolled out autoregressively under their recorded actions for ``--horizon`` frames
(default 10x the model's window) and scored per horizon step by :func:`hma.eval.evaluate`:
PSNR, motion PSNR (over the pixels that moved since the last context frame), ΔPSNR against
random actions, beside the copy-last-frame baseline (a model that predicts no change).
Each row reports bands of the horizon (its first, fifth and last window), at how many steps
the model's PSNR is above the copy baseline's, and a bootstrap interval over clips of the
last band's PSNR. The section links a plot of PSNR against the horizon and a GIF
of one long rollout.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from hma.errors import DataError
from hma.experiments.runs import (EVAL_DIR, ExperimentOptions, datasets_by_embodiment, evaluate_run,
                                      interval_text, need_tokenizer, tokenize, train_run)
from hma.experiments.levers import DEMO_MODEL, DEMO_RECIPE
from hma.eval.report import VIDEO_DIR
from hma.io import atomic_write_bytes, save_figure_png

WINDOWS = 10  # default horizon, in model windows
PLOT_FILE = "long-horizon.png"
GIF_FILE = "long-horizon.gif"


def long_horizon_recipe(opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[str]]:
    from hma.run import load

    tok = need_tokenizer(opts, "discrete", "long-horizon")
    data = [d for ds in datasets_by_embodiment(opts.data).values() for d in ds]
    tokenize(data, tok)
    trained = train_run(opts, "demo_recipe", data, tokenizer=tok, model_changes=DEMO_MODEL, **DEMO_RECIPE)
    window = load(trained["run"]).model.config.num_frames
    horizon = opts.horizon or WINDOWS * window
    evaluated = evaluate_run(opts, "demo_recipe", data, horizon=horizon, mode="autoregressive")
    rows, findings, shown = summarize(evaluated, trained, window)
    assets = opts.assets
    _plot(evaluated, window, assets / PLOT_FILE)
    gif = opts.out / EVAL_DIR / "demo_recipe" / VIDEO_DIR / f"{shown}.gif"
    atomic_write_bytes(assets / GIF_FILE, gif.read_bytes())
    return rows, findings


def summarize(evaluated: dict[str, Any], trained: dict[str, Any], window: int) -> tuple[list[dict[str, Any]], list[str], str]:
    """Rows and findings of the section from the evaluation, and the robot whose rollout the GIF shows."""
    rows = [_row(name, r["modes"]["autoregressive"], r["clips"], window, trained)
            for name, r in sorted(evaluated["per_embodiment"].items())]
    horizon = rows[0]["horizon"]
    shown = max(rows, key=lambda r: r["above_copy"])["label"]  # the robot the model beats the copy baseline most
    beating = [r["label"] for r in rows if r["above_copy"] == horizon]
    findings = [
        f"{trained['steps']} optimizer steps on {len(rows)} robots, window {window} frames; rolled out {horizon} frames "
        f"({horizon / window:g}x the window) under the recorded actions from 2 context frames; bands: the first, the "
        f"fifth and the last window of the horizon",
        f"above the copy-last-frame baseline at every step: {', '.join(beating) or 'no robot'}; per robot the column "
        "'steps above copy' counts the steps where the model's PSNR is higher",
        f"mean PSNR {_mean([r['psnr_first'] for r in rows]):.2f} dB over the first window, "
        f"{_mean([r['psnr_last'] for r in rows]):.2f} dB over the last (copy baseline "
        f"{_mean([r['copy_first'] for r in rows]):.2f} -> {_mean([r['copy_last'] for r in rows]):.2f} dB)",
        f"![PSNR against the horizon](assets/{PLOT_FILE}) ![a long rollout of {shown}: real | model](assets/{GIF_FILE})",
    ]
    return rows, findings, shown


COLUMNS: list[tuple[str, str, str]] = [
    ("psnr_first", "PSNR window 1 (dB)", "{:.2f}"), ("psnr_fifth", "PSNR window 5", "{:.2f}"),
    ("psnr_last_interval", "PSNR last window [95%]", "{}"), ("copy_first", "copy window 1", "{:.2f}"),
    ("copy_last", "copy last window", "{:.2f}"), ("motion_first", "motion PSNR window 1", "{:.2f}"),
    ("motion_last", "motion PSNR last window", "{:.2f}"), ("delta_first", "ΔPSNR window 1", "{:.2f}"),
    ("delta_last", "ΔPSNR last window", "{:.2f}"), ("above_copy", "steps above copy", "{:d}"),
    ("horizon", "horizon (frames)", "{:d}"), ("clips", "clips", "{:d}"),
]


def _bands(horizon: int, window: int) -> dict[str, slice]:
    """The steps of the first, fifth and last full window of the horizon (fifth only when it fits)."""
    count = horizon // window
    if count < 1:
        raise DataError(f"horizon {horizon} is shorter than the model's window of {window} frames, expected at least one window")
    picks = {"first": 1, "fifth": 5, "last": count}
    return {k: slice((m - 1) * window, m * window) for k, m in picks.items() if m <= count}


def _row(name: str, scores: dict[str, Any], clips: int, window: int, trained: dict[str, Any]) -> dict[str, Any]:
    psnr, copy = np.asarray(scores["psnr_by_horizon"]), np.asarray(scores["copy_psnr_by_horizon"])
    motion = np.asarray([np.nan if v is None else v for v in scores["motion_psnr_by_horizon"]])
    delta = np.asarray(scores["delta_psnr_by_horizon"])
    row: dict[str, Any] = {"label": name, "clips": clips, "horizon": len(psnr), "steps": trained["steps"]}
    bands = _bands(len(psnr), window)
    for band, steps in bands.items():
        row[f"psnr_{band}"], row[f"copy_{band}"] = float(psnr[steps].mean()), float(copy[steps].mean())
        row[f"motion_{band}"] = None if np.isnan(motion[steps]).all() else float(np.nanmean(motion[steps]))
        row[f"delta_{band}"] = float(delta[steps].mean())
    per_clip = np.asarray(scores["psnr_by_clip_and_horizon"])[:, bands["last"]].mean(axis=1)  # (B,)
    row["psnr_last_interval"] = interval_text(per_clip)
    row["above_copy"] = int((psnr > copy).sum())
    return row


def _mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    if not kept:
        raise DataError("no robot produced a long-horizon score; expected held-out episodes long enough for the horizon")
    return float(np.mean(kept))


def _plot(evaluated: dict[str, Any], window: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for i, (name, r) in enumerate(sorted(evaluated["per_embodiment"].items())):
        s = r["modes"]["autoregressive"]
        steps = np.arange(1, len(s["psnr_by_horizon"]) + 1)
        ax.plot(steps, s["psnr_by_horizon"], "-", color=f"C{i % 10}", label=name)
        ax.plot(steps, s["copy_psnr_by_horizon"], ":", color=f"C{i % 10}", alpha=0.8)
    ax.axvline(window, color="0.5", linewidth=1)
    ax.text(window, ax.get_ylim()[1], " training window", va="top", fontsize=7, color="0.4")
    ax.set_xlabel("frames generated after the context")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("Long rollouts under the recorded actions (solid) vs copying the last frame (dotted)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure_png(fig, path)
