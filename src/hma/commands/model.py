"""`hma model info`: parameter counts of a preset or a trained run."""

from __future__ import annotations

import argparse

from hma.commands.argtypes import positive_int
from hma.config import PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="inspect world-model presets and runs")
    msub = model.add_subparsers(dest="model_command", metavar="MODEL_COMMAND", required=True)
    p = msub.add_parser("info", help="parameter counts: trunk, per-embodiment stem/head, output heads, total")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", choices=list(PRESETS), help="a model preset")
    which.add_argument("--run", help="a trained run folder")
    p.add_argument("--kind", default="discrete", choices=["discrete", "continuous"],
                   help="token kind the heads predict: discrete codes or continuous latents")
    p.add_argument("--embodiments", type=positive_int, default=1, help="number of (7-dof, chunk 1) embodiments to count")
    p.set_defaults(func=_info)


def _info(args: argparse.Namespace) -> int:
    from hma.model.info import parameter_table

    if args.run is not None:
        from hma.run import load

        print(parameter_table(model=load(args.run, device="cpu").model, title=f"run {args.run}"))
    else:
        print(parameter_table(preset=args.preset, kind=args.kind, embodiments=args.embodiments))
    return 0
