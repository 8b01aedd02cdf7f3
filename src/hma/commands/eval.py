"""`hma eval` (a trained run on held-out episodes) and `hma experiment NAME` (paper recipes at CPU scale)."""

from __future__ import annotations

import argparse
import shlex

DEFAULT_RESULTS_MD = "docs/results.md"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a run on held-out episodes: metrics.json, report.md, plot, videos")
    p.add_argument("--run", required=True, help="trained run folder")
    p.add_argument("--data", nargs="+", required=True, help="dataset folders or folders of datasets")
    p.add_argument("--out", required=True, help="folder for metrics.json, report.md, the plot and the videos")
    p.add_argument("--horizon", type=int, default=None, help="frames generated per clip (default: the model's window - 1)")
    p.add_argument("--context", type=int, default=2, help="true frames each clip starts from")
    p.add_argument("--mode", default="both", choices=["teacher-forced", "autoregressive", "both"])
    p.add_argument("--episodes", type=int, default=None, help="held-out episodes per embodiment (default: all)")
    p.add_argument("--random-draws", type=int, default=3, help="random-action draws behind delta-PSNR (>= 3)")
    p.add_argument("--unmask-steps", type=int, default=2, help="MaskGIT/MAR unmasking steps per frame")
    p.add_argument("--temperature", type=float, default=0.0, help="token sampling temperature (0: greedy)")
    p.add_argument("--diffusion-steps", type=int, default=None, help="DDIM steps of the MAR head or diffusion baseline")
    p.add_argument("--batch-size", type=int, default=16, help="clips generated together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(func=_eval)

    from hma.eval.experiments import EXPERIMENTS, SCALES

    p = sub.add_parser("experiment", help="train, evaluate and tabulate one of the paper's comparisons at CPU scale")
    p.add_argument("name", choices=EXPERIMENTS)
    p.add_argument("--data", nargs="+", required=True, help="dataset folders or folders of datasets (e.g. the tiny suite)")
    p.add_argument("--tokenizer", nargs="+", required=True,
                   help="tokenizer folder(s): a discrete one, plus a continuous one for `methods`")
    p.add_argument("--out", required=True, help="experiment folder; runs, evaluations and results go to OUT/NAME/")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="optimizer steps per trained run")
    budget.add_argument("--minutes", type=float, help="wall-clock training minutes per trained run")
    p.add_argument("--scale", default="tiny", choices=list(SCALES), help="trunk size")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--horizon", type=int, default=None, help="frames generated per evaluation clip")
    p.add_argument("--eval-episodes", type=int, default=4, help="held-out episodes per embodiment evaluated")
    p.add_argument("--target", default=None, help="transfer: the held-out embodiment (default: the last by name)")
    p.add_argument("--results-md", default=DEFAULT_RESULTS_MD, help="markdown file whose section this experiment rewrites")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_experiment)


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _eval(args: argparse.Namespace) -> int:
    from hma.eval.runner import METRICS_FILE, REPORT_FILE, evaluate

    _threads(args.threads)
    result = evaluate(args.run, args.data, args.out, horizon=args.horizon, mode=args.mode, episodes=args.episodes,
                      random_draws=args.random_draws, context=args.context, unmask_steps=args.unmask_steps,
                      temperature=args.temperature, diffusion_steps=args.diffusion_steps, batch_size=args.batch_size,
                      seed=args.seed, device=args.device)
    for name, r in result["per_embodiment"].items():
        ppl = "" if r["perplexity"] is None else f", perplexity {r['perplexity']:.1f}"
        fps = "" if r["fps"] is None else f", {r['fps']:.1f} FPS"
        print(f"{name}: PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}, delta-PSNR {r['delta_psnr']:.2f} dB{ppl}{fps} "
              f"({r['clips']} clips)")
    print(f"wrote {args.out}/{METRICS_FILE} and {args.out}/{REPORT_FILE}")
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The experiment's command with every option explicit, so the docs show how to reproduce it."""
    parts = ["hma", "experiment", args.name, "--data", *args.data, "--tokenizer", *args.tokenizer, "--out", args.out]
    parts += ["--steps", str(args.steps)] if args.steps is not None else ["--minutes", f"{args.minutes:g}"]
    parts += ["--scale", args.scale, "--batch-size", str(args.batch_size), "--lr", f"{args.lr:g}", "--seed", str(args.seed),
              "--eval-episodes", str(args.eval_episodes)]
    results_md = None if args.results_md == DEFAULT_RESULTS_MD else args.results_md
    for flag, value in (("--horizon", args.horizon), ("--target", args.target), ("--results-md", results_md),
                        ("--threads", args.threads)):
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _experiment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hma.eval.experiments import Budget, ExperimentOptions, run_experiment

    _threads(args.threads)
    opts = ExperimentOptions(data=args.data, tokenizers=args.tokenizer, out=Path(args.out),
                             budget=Budget(steps=args.steps, minutes=args.minutes), scale=args.scale,
                             batch_size=args.batch_size, lr=args.lr, seed=args.seed, horizon=args.horizon,
                             eval_episodes=args.eval_episodes, target=args.target, results_md=Path(args.results_md),
                             command=_command_line(args), progress=not args.no_progress)
    result = run_experiment(args.name, opts)
    for f in result["findings"]:
        print(f)
    print(f"wrote {Path(args.out) / args.name}/results.json and updated {args.results_md}")
    return 0
