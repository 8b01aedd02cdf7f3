"""`hma eval`: a trained run on held-out episodes: metrics, report, plot and videos."""

from __future__ import annotations

import argparse

from hma.commands import add_progress, set_threads
from hma.commands.argtypes import (DEVICE_HELP, at_least, device, finite_float, non_negative_float, non_negative_int,
                                   positive_int)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a run on held-out episodes: metrics.json, report.md, plot, videos")
    p.add_argument("--run", required=True, help="trained run folder or its Hub name ORG/NAME")
    p.add_argument("--data", nargs="+", default=None,
                   help="dataset folders or folders of datasets (default: the run's training data still on disk, "
                        "whose held-out episodes it never trained on)")
    p.add_argument("--out", default=None,
                   help="folder for metrics.json, report.md, the plot and the videos (default: eval/RUN_NAME)")
    p.add_argument("--horizon", type=positive_int, default=None, help="frames generated per clip (default: the model's window - 1)")
    p.add_argument("--context", type=positive_int, default=2, help="true frames each clip starts from")
    p.add_argument("--mode", default="both", choices=["teacher-forced", "autoregressive", "both"],
                   help="teacher-forced: each frame from the true ones before it; autoregressive: from generated ones")
    p.add_argument("--episodes", type=positive_int, default=None, help="held-out episodes per embodiment (default: all)")
    p.add_argument("--random-draws", type=at_least(3), default=3, help="random-action draws behind delta-PSNR (>= 3)")
    p.add_argument("--unmask-steps", type=positive_int, default=2, help="MaskGIT/MAR unmasking steps per frame")
    p.add_argument("--temperature", type=non_negative_float, default=0.0, help="token sampling temperature (0: greedy)")
    p.add_argument("--diffusion-steps", type=positive_int, default=None,
                   help="DDIM steps of the MAR head (default 10) or of the diffusion baseline (default: its run's)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="clips generated together")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random-action draws and of sampling")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's, every core)")
    p.add_argument("--device", type=device, default=None, help=DEVICE_HELP)
    # hma.sampling.precision.PRECISIONS, spelled out: importing it would load torch for every CLI call.
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8"),
                   help="arithmetic of generation: fp32, bf16 autocast, int8 linear layers (CPU), or auto: int8 on "
                        "a CPU with VNNI or AMX, bf16 on CUDA, fp32 otherwise")
    p.add_argument("--logit-adjustment", type=finite_float, default=None, metavar="F",
                   help="add F x log(the run's changed-token weight) to the logit of each token staying as it "
                        "was: 1 undoes the weight's pull toward change (default: the run's recommendation, else 0)")
    p.add_argument("--action-guidance", type=finite_float, default=None, metavar="W",
                   help="classifier-free guidance on actions, uncond + W (cond - uncond); for runs trained with "
                        "--action-dropout (default: the run's recommendation, else 1: off)")
    add_progress(p)
    p.set_defaults(func=_eval)



def _eval(args: argparse.Namespace) -> int:
    import dataclasses

    from hma.eval.report import fps_text
    from hma.eval.runner import METRICS_FILE, REPORT_FILE, EvalOptions, evaluate

    set_threads(args.threads)
    # Every EvalOptions field that has an option of the same name.
    given = vars(args)
    options = EvalOptions(**{f.name: given[f.name] for f in dataclasses.fields(EvalOptions) if f.name in given})
    from pathlib import Path

    args.out = args.out or str(Path("eval") / Path(args.run).name)
    result = evaluate(args.run, args.data, args.out, options, device=args.device)
    for name, r in result["per_embodiment"].items():
        ppl = "" if r["perplexity"] is None else f", perplexity {r['perplexity']:.1f}"
        fps = "" if r["fps"] is None else f", {fps_text(r['fps'], r.get('load'))}"
        print(f"{name}: PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}, delta-PSNR vs random actions "
              f"{r['delta_psnr']:.2f} dB{ppl}{fps} ({r['clips']} clips)")
        cf = r.get("counterfactual")
        if cf:  # where the data have the simulator's branches, theirs is the headline delta-PSNR
            d = cf["delta_psnr"]
            print(f"  delta-PSNR vs simulator branches (the headline): {d['mean']:.2f} dB [{d['lo']:.2f}, "
                  f"{d['hi']:.2f}] over {cf['clips']} clip pairs")
        acc = r.get("token_accuracy", {}).get("heldout")
        if acc and acc["all"] is not None:
            print(f"  next-frame tokens right on held-out windows: {acc['all']:.3f} against copying the last "
                  f"frame's {acc['copy']:.3f}")
    print(f"generated at {result['options']['precision_choice']}")
    print(f"wrote {args.out}/{METRICS_FILE} and {args.out}/{REPORT_FILE}")
    return 0

