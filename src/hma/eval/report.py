"""What ``hma eval`` and ``hma experiment`` show people: markdown tables, a PSNR-vs-horizon
plot and real-vs-generated videos (:mod:`hma.eval.gifs`), all written atomically."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hma.eval.counterfactual import follows_other_actions
from hma.eval.gifs import counterfactual_gif, side_by_side_gif
from hma.io import atomic_write_bytes

# The files of an evaluation folder.
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PSNR_PLOT_FILE = "psnr_vs_horizon.png"
VIDEO_DIR = "videos"

MISSING = "–"  # the cell of a value that was not measured
# The two controllability scores, named wherever they appear: against random draws of the
# training actions (every dataset), and against the simulator's counterfactual branches.
DELTA_RANDOM = "ΔPSNR vs random actions"
DELTA_BRANCHES = "ΔPSNR vs simulator branches"

# (metrics key, column title, format) of the per-embodiment table; speed is a line of its own,
# beside the machine's load.
EVAL_COLUMNS: list[tuple[str, str, str]] = [
    ("clips", "clips", "{:d}"),
    ("psnr", "PSNR (dB)", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("delta_psnr", f"{DELTA_RANDOM} (dB)", "{:.2f}"),
    ("lpips", "LPIPS", "{:.3f}"),
    ("fid", "FID", "{:.1f}"),
    ("fvd", "FVD", "{:.1f}"),
    ("perplexity", "perplexity", "{:.1f}"),
    ("recon_psnr", "tokenizer PSNR (dB)", "{:.2f}"),
]


def format_value(value: Any, fmt: str) -> str:
    """A table cell: '–' for a missing value (an unavailable metric), else ``fmt``."""
    if value is None:
        return MISSING
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return fmt.format(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def compact_table(header: Sequence[str], rows: Sequence[Sequence[str]], *,
                  why: Mapping[str, str] | None = None) -> tuple[str, list[str]]:
    """A markdown table without the columns that have no value on any row (the first, the row names,
    always stays), and one note line per column left out: ``why[title]``, else that no robot has one."""
    keep = [j for j in range(len(header)) if j == 0 or not rows or any(row[j] != MISSING for row in rows)]
    notes = [f"No {title} column: {(why or {}).get(title, 'no robot has a value')}."
             for j, title in enumerate(header) if j not in keep]
    return markdown_table([header[j] for j in keep], [[row[j] for j in keep] for row in rows]), notes


def fps_text(fps: float, load: Mapping[str, Any] | None) -> str:
    """A speed with the load of the machine that measured it: "12.3 frames/s (load 1.05 on 2 cores)"."""
    if not load:  # metrics written before the load was recorded
        return f"{fps:.1f} frames/s"
    avg = "n/a" if load.get("load_average") is None else f"{load['load_average']:.2f}"
    return f"{fps:.1f} frames/s (load {avg} on {load.get('cpu_count') or '?'} cores)"


def eval_table(result: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Per-embodiment table of a :func:`hma.eval.evaluate` result, with the overall mean last, and the
    note lines of the columns left out (a metric no robot has, e.g. LPIPS without its weights)."""
    header = ["embodiment", *(title for _, title, _ in EVAL_COLUMNS)]
    rows = []
    for name, r in [*result["per_embodiment"].items(), ("**mean**", result["overall"])]:
        rows.append([name, *(format_value(r.get(key), fmt) for key, _, fmt in EVAL_COLUMNS)])
    per = result["per_embodiment"].values()
    why = {title: "; ".join(sorted({r["notes"][key] for r in per if key in r.get("notes", {})}))
           for key, title, _ in EVAL_COLUMNS}
    return compact_table(header, rows, why={t: w for t, w in why.items() if w})


def _speed_line(result: Mapping[str, Any]) -> list[str]:
    """Frames per second of each robot's autoregressive rollouts, each with the load it was measured under."""
    measured = [f"{name} {fps_text(r['fps'], r.get('load'))}" for name, r in result["per_embodiment"].items()
                if r.get("fps") is not None]
    if not measured:
        return []
    opts = result["options"]
    return [f"\nSpeed of the autoregressive rollouts ({opts['threads']} torch thread(s) on {opts['device']}, "
            f"decoding excluded; beside it the machine's 1-minute load average): {'; '.join(measured)}.\n"]


def _headline_delta(result: Mapping[str, Any]) -> str:
    """Which ΔPSNR is the headline of each robot: against the simulator's branches where the data have them."""
    per = result["per_embodiment"]
    branches = [name for name, r in per.items() if "counterfactual" in r]
    others = [name for name in per if name not in branches]
    text = (f"{DELTA_RANDOM}: the PSNR under the true actions minus the mean PSNR over "
            f"{result['options']['random_draws']} draws of random training actions, with the same sampling noise. ")
    if not branches:
        return text + "It is the headline ΔPSNR of every robot (the data have no simulator branches).\n"
    text += (f"The headline ΔPSNR of {', '.join(branches)} is {DELTA_BRANCHES} (section \"Against the simulator\"), "
             "whose other actions the simulator really played out")
    return text + (f"; of {', '.join(others)}, {DELTA_RANDOM}.\n" if others else ".\n")


def mode_table(result: Mapping[str, Any]) -> tuple[str, list[str]]:
    """PSNR / SSIM / delta-PSNR per embodiment and mode (teacher-forced vs autoregressive)."""
    modes = list(result["overall"]["modes"])
    header = ["embodiment", *(f"{m} {k}" for m in modes for k in ("PSNR", "SSIM", DELTA_RANDOM))]
    rows = []
    for name, r in result["per_embodiment"].items():
        cells = []
        for m in modes:
            s = r["modes"][m]
            cells += [format_value(s["psnr"], "{:.2f}"), format_value(s["ssim"], "{:.3f}"),
                      format_value(s["delta_psnr"], "{:.2f}")]
        rows.append([name, *cells])
    return compact_table(header, rows)


def token_accuracy_table(result: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Next-frame token accuracy per embodiment, held-out beside training episodes."""
    header = ["embodiment", *(f"{split} {k}" for split in ("held-out", "training")
                              for k in ("all", "copy", "unchanged", "changed"))]
    rows = []
    for name, r in [*result["per_embodiment"].items(), ("**mean**", result["overall"])]:
        acc = r.get("token_accuracy")
        if acc is not None:
            rows.append([name, *(format_value(acc[split][k], "{:.3f}") for split in ("heldout", "train")
                                 for k in ("all", "copy", "unchanged", "changed"))])
    return compact_table(header, rows, why={f"{split} changed": "no token changed in the windows scored"
                                            for split in ("held-out", "training")})


def _token_accuracy_section(result: Mapping[str, Any], notes: list[str]) -> list[str]:
    table, left_out = token_accuracy_table(result)
    notes += left_out
    return [
        "\n## Next-frame tokens\n",
        "The true past fully visible and the last frame of a training-length window predicted in one pass "
        "(argmax): the share of its tokens right, beside copying the last frame (which gets exactly the "
        "tokens that did not change right), and split into tokens that stayed and tokens that changed. "
        "Below copying, the model predicts worse than \"nothing moves\"; held-out well below training is "
        "overfitting.\n",
        table,
    ]


COUNTERFACTUAL_GIF_SUFFIX = "_counterfactual.gif"


def _interval(s: Mapping[str, float] | None) -> str:
    return MISSING if s is None else f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]"


def counterfactual_table(result: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Per-embodiment scores against the simulator's counterfactual branches, with 95% intervals."""
    header = ["embodiment", "clips", f"{DELTA_BRANCHES} (dB)", "ceiling (dB)", "fraction", "PSNR true (dB)",
              "CF PSNR (dB)", "true pred vs CF (dB)", "CF gain (dB)", "follows other actions", "motion PSNR true",
              "motion PSNR CF", "tokenizer motion PSNR"]
    rows = []
    for name, r in result["per_embodiment"].items():
        cf = r.get("counterfactual")
        if cf is None:
            continue
        rows.append([name, str(cf["clips"]), _interval(cf["delta_psnr"]), _interval(cf["ceiling"]),
                     format_value(cf["fraction_of_ceiling"], "{:.2f}"), _interval(cf["psnr_true"]),
                     _interval(cf["psnr_counterfactual"]), _interval(cf["psnr_true_vs_counterfactual"]),
                     _interval(cf["counterfactual_gain"]),
                     "yes" if follows_other_actions(cf) else "no", _interval(cf["motion_psnr_true"]),
                     _interval(cf["motion_psnr_counterfactual"]), _interval(cf["tokenizer_motion_psnr"])])
    moved = "the two futures of no clip pair differ"
    return compact_table(header, rows, why={"fraction": "no robot's ceiling is above 0", "motion PSNR true": moved,
                                            "motion PSNR CF": moved, "tokenizer motion PSNR": moved})


def _counterfactual_section(result: Mapping[str, Any], videos: Sequence[str], notes: list[str]) -> list[str]:
    s = result["overall"]["counterfactual"]
    table, left_out = counterfactual_table(result)
    notes += left_out
    return [
        "\n## Against the simulator: counterfactual branches\n",
        "Each held-out clip is paired with the simulator's rollout from the same state under other actions "
        "(random draws of the training actions, smooth exploration, the noisy expert). Autoregressive; "
        f"means with 95% bootstrap intervals over clips. {DELTA_BRANCHES}, the headline ΔPSNR of these robots: "
        "the PSNR under the true actions minus the PSNR under the branch's actions, both against the true future "
        f"(unlike {DELTA_RANDOM}, whose other actions are drawn at random and never played out). The ceiling is "
        f"the {DELTA_BRANCHES} of a perfect model seen through this tokenizer; motion PSNR counts only the pixels "
        "where the two futures differ.\n",
        table,
        f"\n{DELTA_BRANCHES}: interval above 0 for {s['delta_psnr_above_zero']}/{s['embodiments']} robots; "
        f">= 50% of the ceiling for {s['half_of_ceiling']}/{s['embodiments']}; follows the other actions (CF PSNR "
        f"within 1 dB of true-action PSNR, and the CF gain, CF PSNR minus the true-action prediction's PSNR against "
        f"the CF future, above 0 with 95% confidence): {s['follows_other_actions']}/{s['embodiments']}.\n",
        "\nSame start, two action sequences (top: true actions, bottom: other actions; left: simulator, "
        "right: model):\n",
        "\n".join(videos) + "\n",
    ]


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")  # "tight" takes in the legend beside the axes
    return buf.getvalue()


def psnr_figure(result: Mapping[str, Any]):
    """A matplotlib figure of PSNR (dB) against the number of frames generated, one line per embodiment
    and mode, and dotted the copy-last-frame baseline's; the legend sits right of the axes, off the curves."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"autoregressive": "-", "teacher-forced": "--"}  # dotted: the copy baseline
    for i, (name, r) in enumerate(result["per_embodiment"].items()):
        for mode, scores in r["modes"].items():
            ys = scores["psnr_by_horizon"]
            ax.plot(range(1, len(ys) + 1), ys, styles.get(mode, ":"), color=f"C{i % 10}", marker="o", markersize=3,
                    label=f"{name} ({mode})")
        copy = next(iter(r["modes"].values())).get("copy_psnr_by_horizon")  # the same in every mode
        if copy:
            ax.plot(range(1, len(copy) + 1), copy, ":", color=f"C{i % 10}", alpha=0.7, label=f"{name} (copy last frame)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("frames generated after the context")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("PSNR vs horizon (held-out episodes)")
    ax.grid(alpha=0.3)
    entries = len(ax.get_legend_handles_labels()[1])
    # Outside the axes, one column per 20 entries so it stays about as tall as the plot; handles long
    # enough to tell dashed (teacher-forced) from solid.
    ax.legend(fontsize=7, handlelength=3, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              ncol=max(1, math.ceil(entries / 20)))
    return fig


def psnr_plot(result: Mapping[str, Any], path: Path) -> None:
    """:func:`psnr_figure` as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = psnr_figure(result)
    atomic_write_bytes(path, _png_bytes(fig))
    plt.close(fig)


def _videos(result: Mapping[str, Any], shown: Mapping[str, Mapping[str, Any]], out: Path) -> tuple[list[str], list[str]]:
    """Write the GIFs of every robot: the report's lines of real-vs-generated and of counterfactual GIFs."""
    context = result["options"]["context"]
    videos, cf_videos = [], []
    for name, arrays in shown.items():
        generated = {k: v for k, v in arrays.items() if k not in ("real", "counterfactual")}
        rel = f"{VIDEO_DIR}/{name}.gif"
        side_by_side_gif(arrays["real"], generated, out / rel, context=context)
        videos.append(f"- {name}: ![{name}]({rel}) (left: real; then {', '.join(generated)}; named above each)")
        if "counterfactual" in arrays:
            rel = f"{VIDEO_DIR}/{name}{COUNTERFACTUAL_GIF_SUFFIX}"
            counterfactual_gif(arrays["counterfactual"], out / rel, context=context)
            cf_videos.append(f"- {name}: ![{name}]({rel}) (other actions: {arrays['counterfactual']['policy']})")
    return videos, cf_videos


def write_report(result: Mapping[str, Any], shown: Mapping[str, Mapping[str, np.ndarray]], out: Path) -> None:
    """``out/report.md`` with the tables, the PSNR plot and one GIF per embodiment."""
    out = Path(out)
    opts = result["options"]
    psnr_plot(result, out / PSNR_PLOT_FILE)
    videos, cf_videos = _videos(result, shown, out)
    table, notes = eval_table(result)
    by_mode, left_out = mode_table(result)
    notes += left_out
    sections = [*(_token_accuracy_section(result, notes) if "token_accuracy" in result["overall"] else []),
                *(_counterfactual_section(result, cf_videos, notes) if cf_videos else [])]
    # A metric whose column is left out is explained by its column's note, once.
    rows = [*result["per_embodiment"].values(), result["overall"]]
    absent = {key for key, _, _ in EVAL_COLUMNS if all(r.get(key) is None for r in rows)}
    notes += sorted({f"{k}: {v}" for r in result["per_embodiment"].values() for k, v in r["notes"].items()
                     if k not in absent})
    text = [
        f"# Evaluation of `{result['run']}`\n",
        f"Model kind `{result['kind']}` over {result['tokens']} tokens, trained in the `{result['setting']}` setting. "
        f"Held-out episodes (last {opts['holdout']:.0%} of each dataset), clips of {opts['context']} context frames "
        f"+ {opts['horizon']} generated frames; headline metrics from the "
        f"{next(iter(result['per_embodiment'].values()))['headline_mode']} mode; {opts['unmask_steps']} unmasking "
        f"steps, temperature {opts['temperature']:g}; generated at "
        f"{opts.get('precision_choice', 'precision ' + opts['precision'])}. {_headline_delta(result)}",
        table,
        *_speed_line(result),
        "\n## By mode\n",
        f"{DELTA_RANDOM} in each mode, as in the first table.\n",
        by_mode,
        *sections,
        f"\n## PSNR vs horizon\n\n![PSNR vs horizon]({PSNR_PLOT_FILE})\n",
        "\n## Real vs generated (first held-out clip)\n",
        "\n".join(videos) + "\n",
    ]
    if notes:
        text += ["\n## Notes\n", "\n".join(f"- {n}" for n in notes) + "\n"]
    if result.get("skipped"):
        text += ["\n## Skipped datasets\n", "\n".join(f"- {k}: {v}" for k, v in result["skipped"].items()) + "\n"]
    atomic_write_bytes(out / REPORT_FILE, "\n".join(text).encode())
