"""`hma demo`: the world model shipped with hma against the simulator, then taught a new robot.

The demo is the same sequence of commands a user would type, each run as ``python -m hma``
(so this module sits above the CLI without importing it), each stage skipped when its output
is already complete, so re-running after an interruption picks up where it stopped:

1. ``hma data generate --suite tiny``  robot video from the physics simulators, episodes the
   shipped model never saw (another seed than its pre-training data), with counterfactual branches
2. ``hma eval --run hma-tiny``         the shipped model against the simulator: OUT/metrics.json,
   OUT/report.md, plots, videos, and OUT/demo.gif (same start, two action sequences)
3. ``hma data generate`` + ``hma tokenize`` for a robot the shipped model has never seen
4. ``hma finetune --from hma-tiny``    a new stem and head on the shared trunk (the paper's
   transfer story), beside ``hma train`` from scratch for the same minutes, both evaluated:
   OUT/transfer.md

``hma demo --from-scratch`` instead trains everything on the spot: data, an FSQ tokenizer, a
tiny world model (MaskGIT), its evaluation.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hma.io import atomic_write_json

STAGES_DIR = ".stages"


@dataclass(frozen=True)
class DemoBudget:
    """Sizes of the demo; the defaults finish in about 13 minutes on 2 CPU cores.

    What it trains with is hma's recipe (:data:`hma.config.RECIPE`): the demo passes the
    training commands none of the recipe's flags, so it trains exactly as ``hma train`` and
    ``hma tokenizer train`` do by default.
    """

    # 16 per robot instead of the tiny suite's 8: action effects are learned from the
    # training episodes' variety, and two held-out episodes give 48 branch clips per robot.
    episodes: int | None = 16
    tokenizer_minutes: float = 3.0
    train_minutes: float = 5.0
    eval_episodes: int = 2
    horizon: int = 8


def _stage(out: Path, name: str, argv: list[str], run: Callable[[list[str]], int]) -> None:
    stamp = out / STAGES_DIR / f"{name}.json"
    shown = "hma " + " ".join(shlex.quote(a) for a in argv)
    if stamp.exists():
        print(f"[demo] {name}: done earlier, reusing ({shown})", flush=True)
        return
    print(f"\n[demo] {name}: {shown}", flush=True)
    t = time.perf_counter()
    code = run(argv)
    if code:
        from hma.errors import HmaError

        raise HmaError(f"demo stage {name!r} failed with exit code {code}; re-run `hma demo` to resume it")
    atomic_write_json(stamp, {"command": shown, "seconds": round(time.perf_counter() - t, 1)})


@dataclass(frozen=True)
class ShippedDemoBudget:
    """Sizes of the shipped model's demo; the defaults finish in about 12 minutes on 2 CPU cores."""

    episodes: int = 16  # per robot; the last 2 are held out: 48 branch clips per robot
    # Seed of the demo's episodes: the shipped model was pre-trained on seed 0's.
    seed: int = 1
    new_robot: str = "gym_pusher"  # in no shipped model's pre-training data
    new_episodes: int = 32
    finetune_minutes: float = 3.0
    eval_episodes: int = 2
    horizon: int = 8


def _runner(progress: bool) -> Callable[[list[str]], int]:
    def hma(argv: list[str]) -> int:
        return subprocess.run([sys.executable, "-m", "hma", *argv, *([] if progress else ["--no-progress"])]).returncode

    return hma


def run_shipped_demo(out: str | Path = "demo_out", budget: ShippedDemoBudget = ShippedDemoBudget(), *,
                     run: str = "hma-tiny", progress: bool = True) -> Path:
    """Evaluate shipped run ``run`` against the simulator and fine-tune it on a new robot, into ``out``;
    returns the path of the report."""
    from hma.run.pretrained import resolve_run

    hma = _runner(progress)
    out = Path(out)
    data, new, ev = out / "data", out / "new_robot", out
    started = time.perf_counter()
    _stage(out, "data", ["data", "generate", "--suite", "tiny", "--out", str(data), "--seed", str(budget.seed),
                         "--episodes", str(budget.episodes)], hma)
    _stage(out, "eval", ["eval", "--run", run, "--data", str(data), "--out", str(ev), "--episodes",
                         str(budget.eval_episodes), "--horizon", str(budget.horizon)], hma)
    gif = _montage(_demo_clips(ev / "videos"), out / "demo.gif")
    _stage(out, "new_robot", ["data", "generate", "--suite", "default", "--embodiments", budget.new_robot,
                              "--out", str(new), "--seed", str(budget.seed), "--episodes", str(budget.new_episodes)], hma)
    tokenizer = resolve_run(run) / "tokenizer"
    _stage(out, "tokenize", ["tokenize", "--data", str(new), "--tokenizer", str(tokenizer)], hma)
    minutes = str(budget.finetune_minutes)
    # Both train with hma's recipe (the defaults), the model's shape and frame rate the shipped run's.
    seed = ["--seed", str(budget.seed)]
    _stage(out, "finetune", ["finetune", "--from", run, "--data", str(new), "--out", str(out / "finetuned"),
                             "--minutes", minutes, *seed], hma)
    config = _read_model_config(resolve_run(run))
    _stage(out, "scratch", ["train", "--preset", "tiny", "--data", str(new), "--tokenizer", str(tokenizer),
                            "--out", str(out / "scratch"), "--minutes", minutes, "--frame-hz", str(config["frame_hz"]),
                            "--num-frames",
                            str(config["num_frames"]), "--num-blocks", str(config["num_blocks"]),
                            "--changed-token-weight", str(config["changed_token_weight"]), *seed], hma)
    for name in ("finetuned", "scratch"):
        _stage(out, f"eval_{name}", ["eval", "--run", str(out / name), "--data", str(new), "--out",
                                     str(out / f"eval_{name}"), "--episodes", str(budget.eval_episodes),
                                     "--horizon", str(budget.horizon)], hma)
    transfer = _transfer_report(out, budget)
    report = ev / "report.md"
    print(f"\n[demo] finished in {(time.perf_counter() - started) / 60:.1f} min. Report: {report}")
    print(f"[demo] the shipped model against the simulator: {ev / 'metrics.json'}; video: {gif}")
    print(f"[demo] taught a new robot ({budget.new_robot}): {transfer}")
    print("[demo] play with the shipped model in your browser:")
    print("    hma play --embodiment <name from the report>")
    return report


def _read_model_config(run: Path) -> dict:
    from hma.io import read_json

    return read_json(run / "config.json", "run config")["model"]


def _transfer_report(out: Path, budget: ShippedDemoBudget) -> Path:
    """OUT/transfer.md: the new robot, fine-tuned from the shipped model vs trained from scratch."""
    from hma.io import atomic_write_bytes, read_json

    rows = []
    for name, label in (("finetuned", "shipped model + new stem and head, fine-tuned"), ("scratch", "from scratch")):
        m = read_json(out / f"eval_{name}" / "metrics.json", "evaluation metrics")["overall"]
        acc = (m.get("token_accuracy") or {}).get("heldout") or {}
        cf = m.get("counterfactual") or {}
        cells = [m.get("psnr"), m.get("perplexity"), cf.get("mean_delta_psnr"), acc.get("all"), acc.get("copy")]
        rows.append(f"| {label} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in cells) + " |")
    text = (f"# A new robot: {budget.new_robot}\n\n{budget.new_episodes} episodes, {budget.finetune_minutes:g} minutes "
            "of training each, evaluated on its held-out episodes.\n\n"
            "| run | PSNR (dB) | perplexity | ΔPSNR vs simulator (dB) | next-frame tokens right | copy |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    path = out / "transfer.md"
    atomic_write_bytes(path, text.encode())
    return path


def run_demo(out: str | Path = "demo_out", budget: DemoBudget = DemoBudget(), *, seed: int = 0,
             progress: bool = True) -> Path:
    """Train everything from scratch into ``out`` (``hma demo --from-scratch``); returns the path of the report."""
    hma = _runner(progress)
    out = Path(out)
    data, tok, run, ev = out / "data", out / "tokenizer", out / "run", out
    started = time.perf_counter()
    gen = ["data", "generate", "--suite", "tiny", "--out", str(data), "--seed", str(seed)]
    if budget.episodes is not None:
        gen += ["--episodes", str(budget.episodes)]
    _stage(out, "data", gen, hma)
    _stage(out, "tokenizer", ["tokenizer", "train", "--data", str(data), "--kind", "discrete", "--out", str(tok),
                              "--minutes", str(budget.tokenizer_minutes), "--seed", str(seed)], hma)
    _stage(out, "tokenize", ["tokenize", "--data", str(data), "--tokenizer", str(tok)], hma)
    _stage(out, "train", ["train", "--data", str(data), "--tokenizer", str(tok), "--out", str(run),
                          "--minutes", str(budget.train_minutes), "--seed", str(seed)], hma)
    _stage(out, "eval", ["eval", "--run", str(run), "--data", str(data), "--out", str(ev),
                         "--episodes", str(budget.eval_episodes), "--horizon", str(budget.horizon)], hma)
    gif = _montage(_demo_clips(ev / "videos"), out / "demo.gif")
    report = ev / "report.md"
    minutes = (time.perf_counter() - started) / 60
    print(f"\n[demo] finished in {minutes:.1f} min. Report: {report}")
    print(f"[demo] metrics: {ev / 'metrics.json'}; real vs generated video of every robot: {gif}")
    print("[demo] play with the model in your browser:")
    print(f"    hma play --run {run} --embodiment <name from the report>")
    return report


def _demo_clips(videos: Path) -> list[Path]:
    """The GIFs of the demo's montage: same start, two action sequences, simulator beside model,
    where the data has counterfactual branches; else real beside generated."""
    from hma.eval.report import COUNTERFACTUAL_GIF_SUFFIX

    both = sorted(videos.glob(f"*{COUNTERFACTUAL_GIF_SUFFIX}"))
    return both or sorted(videos.glob("*.gif"))


def _montage(gifs: list[Path], out: Path) -> Path:
    """Stack the per-robot real-vs-generated GIFs of the report into one GIF (the README's)."""
    import imageio.v3 as iio
    import numpy as np

    from hma.io import atomic_write_bytes

    clips = [iio.imread(g, index=None)[..., :3] for g in gifs]  # each (T, H, W, 3)
    frames = min(len(c) for c in clips)
    width = max(c.shape[2] for c in clips)
    rows = [np.pad(c[:frames], ((0, 0), (0, 0), (0, width - c.shape[2]), (0, 0))) for c in clips]
    video = np.concatenate(rows, axis=1)  # (T, sum H, W, 3)
    atomic_write_bytes(out, iio.imwrite("<bytes>", video, extension=".gif", duration=200, loop=0))
    return out
