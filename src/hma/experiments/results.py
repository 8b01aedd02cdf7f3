"""The results file (the CLI passes the repository's): one section per experiment and simulator-use report, each replaced
only by its own command (between its markers), in a fixed order; and the renderer of every
section: the recipes' (:func:`recipe_section`), policy evaluation, speed and synth-bc."""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from datetime import datetime, timezone
from pathlib import Path

from hma.errors import ConfigError
from hma.io import atomic_write_bytes

if TYPE_CHECKING:
    from hma.sampling.bench import BenchResult

EXPERIMENTS = ("actions", "transfer", "methods", "injection", "levers", "generalization", "generalization-long",
               "world-model", "long-horizon", "scaling")
# The results file's sections, in order: the experiments (scaling one per axis), then the simulator-use reports.
RESULT_SECTIONS = (*EXPERIMENTS[:-1], "scaling-embodiments", "scaling-trajectories", "scaling-size",
                   "curve", "shipped-model", "policy-eval", "policy-eval-robots", "synth-bc", "synth-bc-real-share",
                   "synth-bc-spatial", "synth-bc-real-share-spatial", "speed")

RESULTS_TITLE = "# Results\n"
RESULTS_INTRO = (
    "Every section below is written by `hma experiment NAME`, which replaces only its own "
    "section (between its markers). Do not edit by hand: re-run the command shown instead.\n\n"
    "`$WORK` stands for the scratch folder the commands ran in (each experiment's results.json "
    "keeps the real paths). Sections written before `--scale` became `--preset` quote the old flag: "
    "`--scale tiny` is `--preset micro`, `small` is `tiny`, `demo` is `demo`.\n"
)
# What a path under the system's temp folder reads as in a results section (the intro says what it stands for).
WORK = "$WORK"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- hma-experiment:{name}:begin -->", f"<!-- hma-experiment:{name}:end -->"


def results_date() -> str:
    """The date a results section records: UTC, to the minute."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def shown_command(argv: Sequence[str]) -> str:
    """The ``hma`` command line a results section quotes, from the arguments as typed."""
    import shlex

    return "hma " + shlex.join(argv)


def shown_paths(text: str) -> str:
    """``text`` with every path under the system's temp folder written as under ``$WORK``
    (``/tmp/w/act`` -> ``$WORK/w/act``): a scratch folder means nothing to a reader, and the
    results file must not depend on where its commands happened to run."""
    prefixes = sorted({tempfile.gettempdir().rstrip("/") or "/", "/tmp"}, key=len, reverse=True)
    # Not inside a longer path (/var/tmp) or name (/tmpfiles): a path starts after a space, quote, `=`, ...
    pattern = "|".join(rf"(?<![\w.~/$-]){re.escape(p)}(?![\w.~-])" for p in prefixes if p != "/")
    return re.sub(pattern, WORK, text)


def update_results_section(path: Path, name: str, body: str) -> None:
    """Replace experiment ``name``'s section of ``path`` (creating the file), atomically.

    Every section passes through here, so every renderer's paths under the temp folder read as
    ``$WORK/...`` (:func:`shown_paths`); the results.json files keep the real command.

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
        sections[name] = f"{begin}\n{shown_paths(body).strip()}\n{end}"
        head = text.rstrip("\n") + "\n"
        ordered = [sections[n] for n in RESULT_SECTIONS if n in sections]
        atomic_write_bytes(path, (head + "\n" + "\n\n".join(ordered) + "\n").encode())
    finally:
        os.close(folder)  # closing releases the lock


def recipe_section(name: str, title: str, claim: str, columns: Sequence[tuple[str, str, str]],
                   result: dict[str, Any]) -> str:
    """The section of an ``hma experiment`` recipe from its results.json: the claim, the command,
    the budget and model, the table (``columns``: result key, header, format) and the findings."""
    from hma.experiments.runs import SCALE_PRESETS
    from hma.eval.report import format_value, markdown_table

    header = ["run", *(column_title for _, column_title, _ in columns)]
    rows = [[r["label"], *(format_value(r.get(k), fmt) for k, _, fmt in columns)] for r in result["rows"]]
    opts = result["options"]
    preset = opts["preset"] if "preset" in opts else SCALE_PRESETS[opts["scale"]]  # earlier results record a scale
    lines = [
        f"## {name}: {title}\n",
        f"Claim (paper): {claim}\n",
        f"Command ({result['date']}):\n",
        f"```\n{result['command']}\n```\n",
        f"Budget: {result['budget']}; preset `{preset}` ({result.get('preset_config') or result['scale_config']}); "
        f"batch {opts['batch_size']}, lr {opts['lr']:g}; evaluated on held-out episodes ({result['eval']}); "
        f"{result['threads']} CPU thread(s).\n",
        markdown_table(header, rows),
        "Findings:\n",
        "\n".join(f"- {f}" for f in result["findings"]) + "\n",
    ]
    return shown_paths("\n".join(lines))  # as the results file shows it, so OUT/NAME/section.md agrees


def policy_eval_section(report: Any, command: str, date: str | None = None) -> str:
    """The ``policy-eval`` section of an :func:`hma.apps.evaluate_policies` report: success in the
    real simulator beside the world model per policy, and their correlations."""
    rows = "\n".join(f"| {r.name} | {r.real_rate:.2f} | {r.model_rate:.2f} |" for r in report.results)
    return (f"## policy-eval: success rates in the real simulator vs in the world model\n\n"
            f"Claim (paper): Pearson 0.95 between learned-simulator and ground-truth success over 4 policies.\n\n"
            f"Command ({date or results_date()}):\n\n```\n{command}\n```\n\n"
            f"| policy | real simulator | world model |\n|---|---|---|\n{rows}\n\n"
            f"- Pearson {report.pearson:.3f}, Spearman {report.spearman:.3f} over {len(report.results)} policies "
            f"x {report.episodes} episodes ({report.embodiment})\n")


def policy_ranking_section(result: dict[str, Any]) -> str:
    """The ``policy-eval-robots`` section of :func:`hma.experiments.policy_ranking.policy_eval_experiment`:
    per task, each policy's success in both simulators, the correlations with their intervals."""
    targets = result["targets"]
    wanted = targets.get("simulators", 2)  # results.json of earlier runs has no simulator count

    def corr(value: float | None, interval: list[float] | None) -> str:
        if value is None or value != value:  # NaN: one side constant across policies
            return "undefined (a side is constant across policies)"
        return f"{value:.3f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else " (no interval)")

    parts = [f"## policy-eval-robots: ranking policies in the multi-robot world model, task by task\n\n"
             f"Claim (paper): success in the learned simulator correlates with the real one's (Pearson 0.95 over "
             f"4 policies). Target here: Pearson >= {targets['pearson']} and Spearman >= {targets['spearman']} on "
             f"tasks of at least {wanted} different simulators.\n\n"
             f"Command ({result['date']}):\n\n```\n{result['command']}\n```\n\n"
             f"The multi-robot world model `{result['run']}`"
             + (f", fine-tuned on {', '.join(t['embodiment'] for t in result['tasks'] if t.get('fine_tuned'))} "
                f"(runs listed per task below)" if any(t.get("fine_tuned") for t in result["tasks"])
                else ", the same for every task, not fine-tuned")
             + f". BC policies are cloned "
             f"from the training episodes of the task's dataset; in the world model the experts' executed actions are "
             f"replayed (they plan on the simulator's state), image policies act on the generated frames. Success in "
             f"the world model: a frame classifier trained on the task's real frames and flags, with an episode rule "
             f"(a run of frames above a threshold) chosen on held-out real and reconstructed episodes.\n"]
    rows = "\n".join(f"| {t['embodiment']} | {p['label']} | {p['real']:.2f} | {p['model']:.2f} | {p['real_by_classifier']:.2f} |"
                     for t in result["tasks"] for p in t["policies"])
    parts.append(f"| task | policy | real simulator | world model | classifier on real frames |\n|---|---|---|---|---|\n{rows}\n")
    parts.append("\n".join(
        f"- {t['embodiment']}: Pearson {corr(t['pearson'], t['pearson_interval'])}, Spearman "
        f"{corr(t['spearman'], t['spearman_interval'])} (95% bootstrap over episodes; {len(t['policies'])} policies x "
        f"{t['episodes']} episodes of {t['steps']} frames; BC on {t['training_episodes']} episodes"
        + (f"; world model fine-tuned on the task: `{t['run']}`" if t.get("fine_tuned") else "")
        + _classifier_note(t.get("classifier") or {}) + ")"
        for t in result["tasks"]))
    met = [t for t in result["tasks"] if t.get("met")]
    below = [t["embodiment"] for t in result["tasks"] if not t.get("met")]
    simulators = sorted({t["simulator"] for t in met})
    verdict = ((f"met on {', '.join(t['embodiment'] for t in met)} ({len(simulators)} simulators: {', '.join(simulators)})"
                if met else "met on no task")
               + (f"; below it on {', '.join(below)}" if below else "")
               + ("" if result["met"] else f"; **not met**: it needs tasks of {wanted} different simulators"))
    plots = " ".join(f"![{t['embodiment']}: world model vs real success]({t['plot']})" for t in result["tasks"])
    parts.append(f"- target (Pearson >= {targets['pearson']}, Spearman >= {targets['spearman']} on tasks of "
                 f"{wanted} simulators): {verdict}\n- {plots}\n")
    return "\n".join(parts)


def _classifier_note(metrics: dict[str, Any]) -> str:
    """The success classifier's episode rule and held-out accuracy, as a clause of a task's line."""
    if "min_frames" not in metrics:
        return ""
    return (f"; success = {metrics['min_frames']:g} frame(s) in a row above {metrics['threshold']:g}, held-out balanced "
            f"accuracy {metrics['heldout_episode_balanced_accuracy']:.2f} per episode, "
            f"{metrics['heldout_balanced_accuracy']:.2f} per frame")


def speed_section(results: Sequence["BenchResult"], machine: dict[str, Any], ratios: Sequence[str], command: str,
                  date: str | None = None, throughput: str | None = None) -> str:
    """The ``speed`` section of an ``hma bench`` run: its table (``results`` are
    :class:`hma.sampling.bench.BenchResult`), the ``ratios`` lines it printed, command and machine."""
    rows = []
    for r in (r for r in results if r.batch == 1):
        dec = r.decode_sec_per_frame
        fps_dec = f"{1 / (r.sec_per_frame + dec):.2f}" if dec is not None else "n/a"
        flops = f"{r.flops_per_frame / 1e9:.1f}" if r.flops_per_frame else "n/a"
        prec = r.precision + (" + compile" if r.compiled else "")
        rows.append(f"| {r.preset} | {r.method} | {'cached' if r.cached else 'uncached'} | {prec} | {r.steps} | "
                    f"{r.sec_per_frame:.4f} | {1 / r.sec_per_frame:.2f} | {fps_dec} | {flops} |")
    return (f"## speed: seconds per generated frame (random weights, batch 1)\n\n"
            f"Claim (paper): MaskGIT HMA generates frames about 15x faster than a video diffusion model "
            f"(Table 1: 22.72 vs 0.28 FPS on a GPU, different model sizes).\n\n"
            f"Command ({date or results_date()}, {machine['threads']} thread(s) on {machine['cpu_count']} cores, load average "
            f"{machine['load_average_before'][0]:.2f} before):\n\n```\n{command}\n```\n\n"
            f"| preset | method | path | precision | steps | s/frame | fps | fps with decoding | GFLOP/frame |\n"
            f"|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            + "\n".join(f"- {line}" for line in ratios) + "\n\n"
            "A cached MaskGIT frame costs K single-frame passes plus one pass that commits the finished "
            "frame's keys/values; an uncached one costs K passes over the whole window of W frames. The "
            "FLOP ratio is therefore W*K/(K+1) (8x for W=12, K=2), the most any exact cache can save; the "
            "(FLOPs) lines above count it.\n"
            + (f"\nBatched (B rollouts per step, env-frames/s, share of the fp32 matmul peak measured in the same "
               f"run):\n\n```\n{throughput}\n```\n" if throughput else ""))


def _synth_bc_finding(results: Sequence[dict[str, Any]], real: float, mixed: float) -> str:
    """Real + synthetic minus real only, paired per evaluation episode (both policies start
    from the same states), with a 95% bootstrap interval over the (seed, episode) pairs."""
    import numpy as np

    from hma.eval.metrics import bootstrap_interval

    if not all("real_only_episodes" in r and "real_plus_synthetic_episodes" in r for r in results):
        raise ConfigError("synth-bc results without per-episode successes, expected real_only_episodes and "
                          "real_plus_synthetic_episodes (results of hma.experiments.synth_bc.run_synth_bc)")
    diff = np.concatenate([np.asarray(r["real_plus_synthetic_episodes"], float) - np.asarray(r["real_only_episodes"], float)
                           for r in results])
    lo, hi = bootstrap_interval(diff)
    verdict = ("synthetic episodes helped beyond the interval" if lo > 0 else
               "synthetic episodes hurt beyond the interval" if hi < 0 else "no difference beyond the interval")
    return (f"{verdict}: {mixed:.2f} with synthetic episodes vs {real:.2f} without, difference {mixed - real:+.2f} "
            f"[{lo:+.2f}, {hi:+.2f}] (95% bootstrap over {len(diff)} paired episodes of {len(results)} seed(s))")


def _synth_bc_settings(first: dict[str, Any]) -> str:
    """The line naming the recipe's levers, where the result records them."""
    parts = [f"{label} {first[key]}" for key, label in (("bc_steps", "BC steps"), ("perturb", "action noise"))
             if key in first]
    if "real_share" in first:
        share = first["real_share"]
        parts.append("batches uniform over all episodes" if share is None else f"real share of each batch {share:g}")
    if first.get("bc_grid", 1) > 1:
        parts.append(f"BC features pooled to {first['bc_grid']}x{first['bc_grid']}")
    if first.get("bc_shift", 0) > 0:
        parts.append(f"random shifts of up to {first['bc_shift']} px")
    return f"- settings: {', '.join(parts)}\n" if parts else ""


def _synth_bc_diagnostics(results: Sequence[dict[str, Any]]) -> str:
    """The line on the synthetic episodes themselves (means over seeds), where recorded."""
    import numpy as np

    diag = [r["synthetic"] for r in results if "synthetic" in r]
    if len(diag) != len(results):
        return ""
    mean = lambda key: float(np.mean([d[key] for d in diag]))  # noqa: E731
    text = f"- the synthetic episodes: sharpness {mean('sharpness_ratio'):.2f} of the real frames' (mean |Laplacian|)"
    if all("synthetic_judged_success" in d for d in diag):
        text += (f"; a success classifier trained on real frames judges {mean('synthetic_judged_success'):.2f} of them "
                 f"successful, and {mean('real_judged_success'):.2f} of the real episodes")
    if all("real_flagged_success" in d for d in diag):
        text += f" (the simulator flags {mean('real_flagged_success'):.2f} of the real episodes)"
    return text + "\n"


def synth_bc_key(real_share: float | None, bc_grid: int = 1, bc_shift: int = 0) -> str:
    """The results section of a synth-bc run: uniform batches or a real share, each with the
    plain BC or the one with a feature grid / random shifts ("-spatial")."""
    key = "synth-bc" if real_share is None else "synth-bc-real-share"
    return key + ("-spatial" if bc_grid > 1 or bc_shift > 0 else "")


def synth_bc_section(results: Sequence[dict[str, Any]], command: str, date: str | None = None) -> str:
    """The results section of one or more :func:`run_synth_bc` results (one per seed):
    command, date, a table with each seed's success rates and their mean, and the finding."""
    import numpy as np

    if not results:
        raise ConfigError("synth_bc_section needs at least one result")
    date = date or results_date()
    first = results[0]
    real = float(np.mean([r["real_only"] for r in results]))
    mixed = float(np.mean([r["real_plus_synthetic"] for r in results]))
    seeds = ", ".join(f"seed {r.get('seed', i)}" for i, r in enumerate(results))
    header = "| training data | episodes | " + " | ".join(f"seed {r.get('seed', i)}" for i, r in enumerate(results))
    header += " | mean |\n|---|---|" + "---|" * (len(results) + 1) + "\n"
    rows = ""
    for key, label, episodes in (("real_only", "real only", f"{first['real_episodes']}"),
                                 ("real_plus_synthetic", "real + synthetic",
                                  f"{first['real_episodes']} + {first['synthetic_episodes']}")):
        values = " | ".join(f"{r[key]:.2f}" for r in results)
        rows += f"| {label} | {episodes} | {values} | {np.mean([r[key] for r in results]):.2f} |\n"
    n = first["eval_episodes"]
    finding = _synth_bc_finding(results, real, mixed)
    share = first.get("real_share")
    key = synth_bc_key(share, first.get("bc_grid", 1), first.get("bc_shift", 0))
    variant = ([] if share is None else [f"real episodes {share:g} of every batch"]) + \
        (["BC with a feature grid and random shifts"] if key.endswith("-spatial") else [])
    title = f"{key}: " + "".join(f"{v}; " for v in variant)
    return (f"## {title}behaviour cloning on real vs real + world-model episodes\n\n"
            f"Claim (paper): adding world-model generated trajectories to a few real ones improves the cloned policy.\n\n"
            f"Command ({date}):\n\n```\n{command}\n```\n\n"
            f"Success in the real simulator ({n} episodes of {first['steps']} frames per policy, {first['embodiment']}; "
            f"{seeds}):\n\n" + header + rows + "\n"
            f"- {finding}\n" + _synth_bc_settings(first) + _synth_bc_diagnostics(results))
