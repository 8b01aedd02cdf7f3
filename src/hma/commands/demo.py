"""`hma demo`: generate data, train a tokenizer and a tiny HMA, evaluate, report."""

from __future__ import annotations

import argparse

from hma.commands import add_progress


def register(sub: argparse._SubParsersAction) -> None:
    from hma.demo import DemoBudget

    d = DemoBudget()
    p = sub.add_parser("demo", help="from nothing to a trained world model and its report in minutes")
    p.add_argument("--out", default="demo_out", help="output folder (finished stages are reused)")
    p.add_argument("--episodes", type=int, default=d.episodes, help="episodes per embodiment")
    p.add_argument("--tokenizer-minutes", type=float, default=d.tokenizer_minutes, help="tokenizer training budget")
    p.add_argument("--train-minutes", type=float, default=d.train_minutes, help="world-model training budget")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the tokenizer and the training")
    add_progress(p)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from hma.demo import DemoBudget, run_demo

    budget = DemoBudget(episodes=args.episodes, tokenizer_minutes=args.tokenizer_minutes, train_minutes=args.train_minutes)
    run_demo(args.out, budget, seed=args.seed, progress=not args.no_progress)
    return 0
