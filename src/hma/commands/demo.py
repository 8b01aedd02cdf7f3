"""`hma demo`: the shipped world model against the simulator and taught a new robot; or, with
--from-scratch, data, a tokenizer and a tiny HMA trained on the spot."""

from __future__ import annotations

import argparse

from hma.commands import add_progress
from hma.commands.argtypes import non_negative_int, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    from hma.demo import DemoBudget, ShippedDemoBudget

    d, s = DemoBudget(), ShippedDemoBudget()
    p = sub.add_parser("demo", help="the shipped world model against the simulator, then taught a new robot, in minutes")
    p.add_argument("--out", default="demo_out", help="output folder (finished stages are reused)")
    p.add_argument("--from-scratch", action="store_true",
                   help="train data, tokenizer and world model on the spot instead of starting from the shipped model")
    p.add_argument("--finetune-minutes", type=positive_float, default=s.finetune_minutes,
                   help=f"minutes of fine-tuning on the new robot, and of its from-scratch run (default {s.finetune_minutes:g})")
    p.add_argument("--episodes", type=positive_int, default=None,
                   help=f"episodes per embodiment (default {s.episodes}; {d.episodes} with --from-scratch)")
    p.add_argument("--tokenizer-minutes", type=positive_float, default=d.tokenizer_minutes,
                   help=f"--from-scratch: tokenizer training budget (default {d.tokenizer_minutes:g})")
    p.add_argument("--train-minutes", type=positive_float, default=d.train_minutes,
                   help=f"--from-scratch: world-model training budget (default {d.train_minutes:g})")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help=f"seed of the data (and with --from-scratch of the training; default {s.seed}, "
                        "0 with --from-scratch)")
    add_progress(p)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    import dataclasses

    from hma.demo import DemoBudget, ShippedDemoBudget, run_demo, run_shipped_demo
    from hma.run.pretrained import DEFAULT_RUN, shipped_runs

    if not args.from_scratch and DEFAULT_RUN not in shipped_runs():
        print(f"[demo] this installation holds no shipped model ({DEFAULT_RUN}); training one from scratch instead")
        args.from_scratch = True
    if args.from_scratch:
        budget = DemoBudget(tokenizer_minutes=args.tokenizer_minutes, train_minutes=args.train_minutes,
                            **({} if args.episodes is None else {"episodes": args.episodes}))
        run_demo(args.out, budget, seed=args.seed or 0, progress=not args.no_progress)
        return 0
    given = {"episodes": args.episodes, "seed": args.seed, "finetune_minutes": args.finetune_minutes}
    budget = dataclasses.replace(ShippedDemoBudget(), **{k: v for k, v in given.items() if v is not None})
    run_shipped_demo(args.out, budget, progress=not args.no_progress)
    return 0
