"""``hma experiment curve``: one run's snapshots (``hma train --snapshot-steps``) evaluated on the
same held-out clips against the simulator's branches, to say whether more compute keeps paying.

Each point is the run's weights at that step, under the run's own learning-rate schedule (not
a separate run trained for that many steps): what a longer run buys, as it trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hma.errors import DataError
from hma.eval.card import robot_checks
from hma.io import atomic_write_bytes, atomic_write_json

PLOT_FILE = "curve.png"
COLUMNS: list[tuple[str, str, str]] = [
    ("steps", "steps", "{:,}"), ("delta", "ΔPSNR vs simulator (dB), mean over robots", "{:.2f}"),
    ("fraction", "fraction of ceiling", "{:.2f}"), ("above_zero", "robots: ΔPSNR interval > 0", "{}"),
    ("half", "≥ 50% ceiling", "{}"), ("follows", "follows", "{}"), ("tokens_all", "tokens right", "{:.3f}"),
    ("tokens_copy", "copy", "{:.3f}"), ("tokens_unchanged", "unchanged", "{:.3f}"),
    ("tokens_changed", "changed", "{:.3f}"), ("tokens_train", "tokens right (training)", "{:.3f}"),
]


def snapshot_runs(run: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every snapshot of ``run`` and of the run itself, by step."""
    from hma.run.files import read_run_config
    from hma.train.checkpoint import SNAPSHOTS_DIR

    found = {int(read_run_config(p)["step"]): p for p in sorted((run / SNAPSHOTS_DIR).glob("step_*")) if p.is_dir()}
    found[int(read_run_config(run)["step"])] = run
    return sorted(found.items())


def curve_rows(run: str | Path, data: Sequence[str], out: Path, *, episodes: int, horizon: int,
               seed: int) -> list[dict[str, Any]]:
    """One row per snapshot: mean ΔPSNR against the branches, robots passing each check, token accuracy."""
    from hma.eval.runner import evaluate

    rows = []
    for step, folder in snapshot_runs(Path(run)):
        result = evaluate(folder, data, out / f"step_{step:07d}", episodes=episodes, horizon=horizon, seed=seed,
                          precision="fp32", report=False)  # fp32, as the curve in the results was measured
        per = result["per_embodiment"]
        if not all("counterfactual" in r for r in per.values()):
            raise DataError(f"the curve scores snapshots against counterfactual branches, and {', '.join(data)} "
                            "lacks them for some robot; expected datasets written by `hma data generate`")
        checks = [robot_checks(r) for r in per.values()]
        cf = result["overall"]["counterfactual"]
        acc = result["overall"]["token_accuracy"]
        n = len(per)
        rows.append({
            "steps": step, "delta": cf["mean_delta_psnr"], "fraction": cf["mean_fraction_of_ceiling"],
            "above_zero": f"{cf['delta_psnr_above_zero']}/{n}", "half": f"{cf['half_of_ceiling']}/{n}",
            "follows": f"{cf['follows_other_actions']}/{n}",
            **{f"tokens_{k}": acc["heldout"][k] for k in ("all", "copy", "unchanged", "changed")},
            "tokens_train": acc["train"]["all"],
            "robots_above_copy": sum(bool(c["tokens_above_copy"]) for c in checks),
            "per_robot_delta": {name: r["counterfactual"]["delta_psnr"] for name, r in per.items()},
        })
    return rows


def curve_section(result: dict[str, Any], plot: str) -> str:
    from hma.eval.report import format_value, markdown_table

    rows = result["rows"]
    table = markdown_table(["run at", *(t for _, t, _ in COLUMNS[1:])],
                           [[f"{r['steps']:,} steps", *(format_value(r.get(k), f) for k, _, f in COLUMNS[1:])]
                            for r in rows])
    robots = sorted(rows[-1]["per_robot_delta"])
    per_robot = markdown_table(["run at", *robots], [
        [f"{r['steps']:,} steps", *(f"{r['per_robot_delta'][n]['mean']:.2f} [{r['per_robot_delta'][n]['lo']:.2f}, "
                                    f"{r['per_robot_delta'][n]['hi']:.2f}]" for n in robots)] for r in rows])
    first, last = rows[0], rows[-1]
    pays = last["delta"] > first["delta"] and last["tokens_all"] > first["tokens_all"]
    return "\n".join([
        "## curve: one long run's snapshots against the simulator\n",
        "Claim: more training keeps paying (paper: positive scaling); each point is the run at that step, "
        "scored on the same held-out clips.\n",
        f"Command ({result['date']}):\n",
        f"```\n{result['command']}\n```\n",
        f"The run: {result['train_settings']}.\n",
        table,
        "ΔPSNR per robot, mean [95% interval over clips]:\n",
        per_robot,
        "Findings:\n",
        f"- from {first['steps']:,} to {last['steps']:,} steps: ΔPSNR {first['delta']:.2f} -> {last['delta']:.2f} dB, "
        f"next-frame tokens right {first['tokens_all']:.3f} -> {last['tokens_all']:.3f} (copying: "
        f"{last['tokens_copy']:.3f}); " + ("both rose: more compute paid" if pays else "not both rose"),
        f"- robots whose next-frame tokens beat copying: " + ", ".join(
            f"{r['robots_above_copy']} at {r['steps']:,}" for r in rows),
        f"- ![ΔPSNR and token accuracy against steps](assets/{plot})\n",
    ])


def plot_curve(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["steps"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in sorted(rows[-1]["per_robot_delta"]):
        a.plot(steps, [r["per_robot_delta"][name]["mean"] for r in rows], marker="o", label=name)
    a.set(xscale="log", xlabel="optimizer steps", ylabel="ΔPSNR vs simulator (dB)")
    a.axhline(0, color="grey", lw=0.5)
    a.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    b.plot(steps, [r["tokens_all"] for r in rows], marker="o", label="held-out")
    b.plot(steps, [r["tokens_train"] for r in rows], marker="o", label="training")
    b.plot(steps, [r["tokens_copy"] for r in rows], ls="--", label="copy last frame")
    b.set(xscale="log", xlabel="optimizer steps", ylabel="next-frame tokens right")
    b.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for ax in (a, b):  # the snapshots' own steps as ticks, no log-scale minor labels over them
        ax.minorticks_off()
        ax.set_xticks(steps, [f"{s / 1000:g}k" for s in steps])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def curve_experiment(run: str | Path, data: Sequence[str], out: str | Path, *, results_file: Path, command: str,
                     episodes: int = 2, horizon: int = 8, seed: int = 0) -> dict[str, Any]:
    """Evaluate every snapshot of ``run``; writes OUT/curve/results.json, the plot beside
    ``results_file`` (assets/curve.png) and the ``curve`` section of ``results_file``."""
    from hma.experiments.results import results_date, update_results_section
    from hma.run.files import read_run_config

    out = Path(out) / "curve"
    rows = curve_rows(run, data, out, episodes=episodes, horizon=horizon, seed=seed)
    if len(rows) < 2:
        raise DataError(f"run {run} has no snapshots, expected a run trained with --snapshot-steps")
    train = read_run_config(Path(run)).get("train", {})
    settings = ("data", "setting", "frame_hz", "num_frames", "lr", "batch_size", "ema", "seed")
    result = {"experiment": "curve", "command": command, "date": results_date(), "rows": rows,
              "train_settings": ", ".join(f"{k} {train[k]}" for k in settings if k in train)}
    atomic_write_json(out / "results.json", result)
    plot_curve(rows, Path(results_file).parent / "assets" / PLOT_FILE)
    update_results_section(Path(results_file), "curve", curve_section(result, PLOT_FILE))
    return result
