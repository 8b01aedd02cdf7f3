"""What ``hma eval`` and ``hma experiment`` show people: markdown tables, a PSNR-vs-horizon
plot and real-vs-generated videos, all written atomically."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hma.eval.counterfactual import follows_other_actions
from hma.io import atomic_write_bytes

# The files of an evaluation folder.
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PSNR_PLOT_FILE = "psnr_vs_horizon.png"
VIDEO_DIR = "videos"

# (metrics key, column title, format) of the per-embodiment table.
EVAL_COLUMNS: list[tuple[str, str, str]] = [
    ("clips", "clips", "{:d}"),
    ("psnr", "PSNR (dB)", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("delta_psnr", "ΔPSNR (dB)", "{:.2f}"),
    ("lpips", "LPIPS", "{:.3f}"),
    ("fid", "FID", "{:.1f}"),
    ("fvd", "FVD", "{:.1f}"),
    ("perplexity", "perplexity", "{:.1f}"),
    ("fps", "FPS", "{:.1f}"),
    ("recon_psnr", "tokenizer PSNR (dB)", "{:.2f}"),
]


def format_value(value: Any, fmt: str) -> str:
    """A table cell: '–' for a missing value (an unavailable metric), else ``fmt``."""
    if value is None:
        return "–"
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return fmt.format(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def eval_table(result: Mapping[str, Any]) -> str:
    """Per-embodiment table of a :func:`hma.eval.evaluate` result, with the overall mean last."""
    header = ["embodiment", *(title for _, title, _ in EVAL_COLUMNS)]
    rows = []
    for name, r in [*result["per_embodiment"].items(), ("**mean**", result["overall"])]:
        rows.append([name, *(format_value(r.get(key), fmt) for key, _, fmt in EVAL_COLUMNS)])
    return markdown_table(header, rows)


def mode_table(result: Mapping[str, Any]) -> str:
    """PSNR / SSIM / delta-PSNR per embodiment and mode (teacher-forced vs autoregressive)."""
    modes = list(result["overall"]["modes"])
    header = ["embodiment", *(f"{m} {k}" for m in modes for k in ("PSNR", "SSIM", "ΔPSNR"))]
    rows = []
    for name, r in result["per_embodiment"].items():
        cells = []
        for m in modes:
            s = r["modes"][m]
            cells += [format_value(s["psnr"], "{:.2f}"), format_value(s["ssim"], "{:.3f}"),
                      format_value(s["delta_psnr"], "{:.2f}")]
        rows.append([name, *cells])
    return markdown_table(header, rows)


def token_accuracy_table(result: Mapping[str, Any]) -> str:
    """Next-frame token accuracy per embodiment, held-out beside training episodes."""
    header = ["embodiment", *(f"{split} {k}" for split in ("held-out", "training")
                              for k in ("all", "copy", "unchanged", "changed"))]
    rows = []
    for name, r in [*result["per_embodiment"].items(), ("**mean**", result["overall"])]:
        acc = r.get("token_accuracy")
        if acc is not None:
            rows.append([name, *(format_value(acc[split][k], "{:.3f}") for split in ("heldout", "train")
                                 for k in ("all", "copy", "unchanged", "changed"))])
    return markdown_table(header, rows)


def _token_accuracy_section(result: Mapping[str, Any]) -> list[str]:
    return [
        "\n## Next-frame tokens\n",
        "The true past fully visible and the last frame of a training-length window predicted in one pass "
        "(argmax): the share of its tokens right, beside copying the last frame (which gets exactly the "
        "tokens that did not change right), and split into tokens that stayed and tokens that changed. "
        "Below copying, the model predicts worse than \"nothing moves\"; held-out well below training is "
        "overfitting.\n",
        token_accuracy_table(result),
    ]


COUNTERFACTUAL_GIF_SUFFIX = "_counterfactual.gif"


def _interval(s: Mapping[str, float] | None) -> str:
    return "–" if s is None else f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]"


def counterfactual_table(result: Mapping[str, Any]) -> str:
    """Per-embodiment scores against the simulator's counterfactual branches, with 95% intervals."""
    header = ["embodiment", "clips", "ΔPSNR (dB)", "ceiling (dB)", "fraction", "PSNR true (dB)", "CF PSNR (dB)",
              "true pred vs CF (dB)", "CF gain (dB)", "follows other actions", "motion PSNR true", "motion PSNR CF",
              "tokenizer motion PSNR"]
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
    return markdown_table(header, rows)


def _counterfactual_section(result: Mapping[str, Any], videos: Sequence[str]) -> list[str]:
    s = result["overall"]["counterfactual"]
    return [
        "\n## Against the simulator: counterfactual branches\n",
        "Each held-out clip is paired with the simulator's rollout from the same state under other actions "
        "(random draws of the training actions, smooth exploration, the noisy expert). Autoregressive; "
        "means with 95% bootstrap intervals over clips. ΔPSNR uses the other actions as the random ones; "
        "the ceiling is the ΔPSNR of a perfect model seen through this tokenizer; motion PSNR counts only "
        "the pixels where the two futures differ.\n",
        counterfactual_table(result),
        f"\nΔPSNR interval above 0: {s['delta_psnr_above_zero']}/{s['embodiments']} robots; ΔPSNR >= 50% of the "
        f"ceiling: {s['half_of_ceiling']}/{s['embodiments']}; follows the other actions (CF PSNR within 1 dB of "
        f"true-action PSNR, and the CF gain, CF PSNR minus the true-action prediction's PSNR against the CF "
        f"future, above 0 with 95% confidence): "
        f"{s['follows_other_actions']}/{s['embodiments']}.\n",
        "\nSame start, two action sequences (top: true actions, bottom: other actions; left: simulator, "
        "right: model):\n",
        "\n".join(videos) + "\n",
    ]


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def psnr_plot(result: Mapping[str, Any], path: Path) -> None:
    """PSNR (dB) against the number of frames generated, one line per embodiment and mode, and
    dotted the copy-last-frame baseline's."""
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
    ax.legend(fontsize=7, handlelength=3)  # long enough to tell dashed (teacher-forced) from solid
    atomic_write_bytes(path, _png_bytes(fig))
    plt.close(fig)


def side_by_side_gif(real: np.ndarray, generated: Mapping[str, np.ndarray], path: Path, *, context: int,
                     fps: float = 4.0) -> None:
    """GIF of real frames (L, H, W, 3) beside each generated sequence of the same length.

    Context frames (copied from the real clip) get a grey bar under them, generated frames a
    red one, so a viewer can tell where generation starts.
    """
    _write_gif(_side_by_side(real, generated, context=context), path, fps=fps)


def counterfactual_gif(shown: Mapping[str, Any], path: Path, *, context: int, fps: float = 4.0) -> None:
    """Two rows from the same start: simulator beside model under the true actions (top) and
    under the other actions (bottom)."""
    top = _side_by_side(shown["simulator, true actions"], {"model": shown["model, true actions"]}, context=context)
    bottom = _side_by_side(shown["simulator, other actions"], {"model": shown["model, other actions"]},
                           context=context)
    gap = np.full((top.shape[0], 6, *top.shape[2:]), 255, dtype=np.uint8)
    _write_gif(np.concatenate([top, gap, bottom], axis=1), path, fps=fps)


def _write_gif(frames: np.ndarray, path: Path, *, fps: float) -> None:
    import imageio.v3 as iio

    atomic_write_bytes(path, iio.imwrite("<bytes>", frames, extension=".gif", duration=1000 / fps, loop=0))


def _side_by_side(real: np.ndarray, generated: Mapping[str, np.ndarray], *, context: int) -> np.ndarray:
    """Frames (L, H', W', 3) of :func:`side_by_side_gif`."""
    scale = max(1, 128 // real.shape[1])  # small simulator frames are hard to see at 64 px
    panels = [real, *generated.values()]
    frames = []
    for t in range(real.shape[0]):
        row = []
        for k, panel in enumerate(panels):
            img = panel[t].repeat(scale, 0).repeat(scale, 1)  # (H*s, W*s, 3)
            bar = np.zeros((4, img.shape[1], 3), dtype=np.uint8)
            bar[:] = (128, 128, 128) if (k == 0 or t < context) else (220, 40, 40)
            row.append(np.concatenate([img, bar]))
            row.append(np.full((row[-1].shape[0], 2, 3), 255, dtype=np.uint8))
        frames.append(np.concatenate(row[:-1], axis=1))
    return np.stack(frames)


def write_report(result: Mapping[str, Any], shown: Mapping[str, Mapping[str, np.ndarray]], out: Path) -> None:
    """``out/report.md`` with the tables, the PSNR plot and one GIF per embodiment."""
    out = Path(out)
    opts = result["options"]
    psnr_plot(result, out / PSNR_PLOT_FILE)
    videos, cf_videos = [], []
    for name, arrays in shown.items():
        generated = {k: v for k, v in arrays.items() if k not in ("real", "counterfactual")}
        rel = f"{VIDEO_DIR}/{name}.gif"
        side_by_side_gif(arrays["real"], generated, out / rel, context=opts["context"])
        videos.append(f"- {name}: ![{name}]({rel}) (left: real; then {', '.join(generated)})")
        if "counterfactual" in arrays:
            rel = f"{VIDEO_DIR}/{name}{COUNTERFACTUAL_GIF_SUFFIX}"
            counterfactual_gif(arrays["counterfactual"], out / rel, context=opts["context"])
            cf_videos.append(f"- {name}: ![{name}]({rel}) (other actions: {arrays['counterfactual']['policy']})")
    notes = sorted({f"{k}: {v}" for r in result["per_embodiment"].values() for k, v in r["notes"].items()})
    text = [
        f"# Evaluation of `{result['run']}`\n",
        f"Model kind `{result['kind']}` over {result['tokens']} tokens, trained in the `{result['setting']}` setting. "
        f"Held-out episodes (last {opts['holdout']:.0%} of each dataset), clips of {opts['context']} context frames "
        f"+ {opts['horizon']} generated frames; headline metrics from the "
        f"{next(iter(result['per_embodiment'].values()))['headline_mode']} mode; ΔPSNR over "
        f"{opts['random_draws']} random-action draws; {opts['unmask_steps']} unmasking steps, temperature "
        f"{opts['temperature']:g}; generated at {opts.get('precision_choice', 'precision ' + opts['precision'])}; "
        f"FPS with {opts['threads']} thread(s) on {opts['device']}, decoding excluded.\n",
        eval_table(result),
        "\n## By mode\n",
        mode_table(result),
        *(_token_accuracy_section(result) if "token_accuracy" in result["overall"] else []),
        *(_counterfactual_section(result, cf_videos) if cf_videos else []),
        f"\n## PSNR vs horizon\n\n![PSNR vs horizon]({PSNR_PLOT_FILE})\n",
        "\n## Real vs generated (first held-out clip)\n",
        "\n".join(videos) + "\n",
    ]
    if notes:
        text += ["\n## Notes\n", "\n".join(f"- {n}" for n in notes) + "\n"]
    if result.get("skipped"):
        text += ["\n## Skipped datasets\n", "\n".join(f"- {k}: {v}" for k, v in result["skipped"].items()) + "\n"]
    atomic_write_bytes(out / REPORT_FILE, "\n".join(text).encode())
