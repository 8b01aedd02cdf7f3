"""`hma experiment NAME`: the paper's comparisons at CPU scale, each written as a section of docs/results.md.

The recipes (actions, transfer, methods, ...) train runs on --data; `curve`, `synth-bc` and
`policy-ranking` measure runs that are already trained.
"""

from __future__ import annotations

import argparse

from hma.commands import add_progress, explicit_command, set_threads
from hma.commands.argtypes import (DEVICE_HELP, device, non_negative_float, non_negative_int, nonzero_share, positive_float,
                                   positive_int)

DEFAULT_RESULTS_MD = "docs/results.md"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="train, evaluate and tabulate one of the paper's comparisons at CPU scale",
                       description="The recipes actions, transfer, methods, injection, levers, world-model, long-horizon and "
                                   "scaling train runs on --data; synth-bc uses a trained world model (--run, --embodiment). "
                                   "`hma experiment NAME --help` lists a recipe's options.")
    names = p.add_subparsers(dest="name", metavar="NAME", required=True)
    common = _common_options()
    _add_recipes(names, common)
    _add_synth_bc(names, common)
    _add_curve(names, common)
    _add_policy_ranking(names, common)


def _common_options() -> argparse.ArgumentParser:
    """The options of every experiment, as a parent parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, help="experiment folder; runs, evaluations and results go to OUT/NAME/")
    common.add_argument("--seed", type=non_negative_int, default=0, help="seed of the runs and their evaluation")
    common.add_argument("--results-md", default=DEFAULT_RESULTS_MD, help="markdown file whose section this experiment rewrites")
    common.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's, every core)")
    add_progress(common)
    return common


def _add_recipes(names: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """One sub-command per recipe of :data:`hma.experiments.results.EXPERIMENTS`: they train runs on --data."""
    from hma.config import PRESETS
    from hma.experiments.results import EXPERIMENTS
    from hma.experiments.scaling import AXES as SCALING_AXES

    recipe = argparse.ArgumentParser(add_help=False, parents=[common])
    recipe.add_argument("--data", nargs="+", default=None, help="dataset folders or folders of datasets (e.g. the tiny suite)")
    recipe.add_argument("--tokenizer", nargs="+", default=None,
                        help="tokenizer folder(s): a discrete one, plus a continuous one for `methods`")
    budget = recipe.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=positive_int, help="optimizer steps per trained run")
    budget.add_argument("--minutes", type=positive_float, help="wall-clock training minutes per trained run")
    recipe.add_argument("--preset", default="micro", choices=list(PRESETS),
                        help="model preset of every trained run, as `hma train --preset` (default micro)")
    recipe.add_argument("--batch-size", type=positive_int, default=8, help="windows per batch of every trained run")
    recipe.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate of every trained run")
    recipe.add_argument("--horizon", type=positive_int, default=None,
                        help="frames generated per evaluation clip (default: the recipe's: 8 in levers and scaling, "
                             "10 windows in long-horizon, else the model's window - 1)")
    recipe.add_argument("--eval-episodes", type=positive_int, default=4, help="held-out episodes per embodiment evaluated")
    recipe.add_argument("--target", default=None, help="transfer: the held-out embodiment (default: the last by name); "
                                                       "scaling --axis embodiments: the evaluated one (default: the first)")
    recipe.add_argument("--resume", action="store_true",
                        help="keep the runs and evaluations of OUT/NAME finished with the same settings (a re-run "
                             "after adding rows, or after a stop, trains and evaluates only the rest)")
    recipe.add_argument("--render-only", action="store_true",
                        help="write the sections of a finished experiment again from OUT/NAME/results.json, "
                             "training nothing (after a change of how sections read)")
    for name in EXPERIMENTS:
        q = names.add_parser(name, parents=[recipe], help=f"the {name} recipe: trains runs on --data and tabulates them")
        if name == "scaling":
            q.add_argument("--axis", required=True, choices=SCALING_AXES,
                           help="what grows from point to point: robots trained on, training episodes, or trunk size")
        q.set_defaults(func=_recipe, parser=q)


def _add_synth_bc(names: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sb = names.add_parser("synth-bc", parents=[common],
                          help="behaviour cloning on real vs real + world-model episodes, scored in the real simulator")
    sb.add_argument("--run", required=True, help="trained world-model run that generates the synthetic episodes")
    sb.add_argument("--embodiment", required=True, help="embodiment with a simulator to score the policies in")
    sb.add_argument("--data", default=None, help="the real dataset (default: the run's own of --embodiment)")
    sb.add_argument("--real-episodes", type=positive_int, default=10, help="real episodes both policies are cloned from")
    sb.add_argument("--synthetic-episodes", type=positive_int, default=90, help="world-model episodes added to the second")
    sb.add_argument("--eval-episodes", type=positive_int, default=20, help="episodes each policy runs in the real simulator")
    sb.add_argument("--bc-steps", type=positive_int, default=500, help="optimizer steps of each behaviour-cloning policy")
    sb.add_argument("--repeats", type=positive_int, default=1,
                    help="run the comparison with seeds SEED..SEED+N-1 and report each and their mean")
    sb.add_argument("--perturb", type=non_negative_float, default=0.1,
                    help="noise std on the recorded actions that drive the synthetic episodes, fraction of their range")
    sb.add_argument("--real-share", type=nonzero_share, default=None, metavar="F",
                    help="fraction of each batch of the real + synthetic policy drawn from the real episodes "
                         "(default: uniform over all episodes, so the real ones are seen less often)")
    sb.add_argument("--bc-grid", type=positive_int, default=1, metavar="G",
                    help="pool the BC CNN's features to a GxG map, which keeps where things are (default: 1, a global pool)")
    sb.add_argument("--bc-shift", type=non_negative_int, default=0, metavar="PX",
                    help="random shifts of up to PX pixels on the BC training frames (default: 0, none)")
    sb.set_defaults(func=_synth_bc, parser=sb)


def _add_curve(names: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    cv = names.add_parser("curve", parents=[common],
                          help="a run's snapshots (hma train --snapshot-steps) against the simulator, on the same clips")
    cv.add_argument("--run", required=True, help="the trained run whose RUN/snapshots/ are evaluated")
    cv.add_argument("--data", nargs="+", required=True, help="datasets with counterfactual branches")
    cv.add_argument("--episodes", type=positive_int, default=2, help="held-out episodes per robot (default 2)")
    cv.add_argument("--horizon", type=positive_int, default=8, help="generated frames per clip (default 8)")
    cv.set_defaults(func=_curve, parser=cv)


def _add_policy_ranking(names: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    pr = names.add_parser("policy-ranking", parents=[common],
                          help="rank BC, noisy-expert and random policies in the multi-robot world model vs the real "
                               "simulators, task by task, with bootstrap intervals of the correlations")
    pr.add_argument("--run", required=True, help="the trained multi-robot world-model run")
    pr.add_argument("--embodiments", nargs="+", required=True,
                    help="the tasks: embodiments of the run with a simulator and success flags in their data")
    pr.add_argument("--data", nargs="+", default=None, help="dataset folders of the tasks' real episodes (default: the run's)")
    pr.add_argument("--episodes", type=positive_int, default=20, help="episodes per policy, in each simulator")
    pr.add_argument("--frames", type=positive_int, default=None, help="frames per episode (default: the dataset's episode length)")
    pr.add_argument("--noise", type=non_negative_float, nargs="+", default=[0.0, 0.5, 1.0, 1.5],
                    help="noise levels of the scripted-expert policies, fractions of the half action range")
    pr.add_argument("--bc-steps", type=positive_int, nargs="+", default=[30, 300, 1500],
                    help="behaviour-cloning policies: one per number of training steps")
    pr.add_argument("--task-run", nargs="+", default=[], metavar="EMBODIMENT=RUN",
                    help="use RUN (the multi-robot run fine-tuned on that task, `hma finetune --from`) for that task")
    pr.add_argument("--device", type=device, default=None, help=DEVICE_HELP)
    pr.set_defaults(func=_policy_ranking, parser=pr)



def _recipe(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from hma.errors import ConfigError
    from hma.experiments.runs import Budget, ExperimentOptions
    from hma.experiments.recipes import recipe_key, run_experiment

    set_threads(args.threads)
    if args.render_only:
        from hma.experiments.recipes import render_experiment

        axis = vars(args).get("axis")
        key = recipe_key(args.name, axis)
        render_experiment(args.name, Path(args.out), Path(args.results_md), axis=axis)
        print(f"re-wrote the {key} section of {args.results_md} from {Path(args.out) / key}/results.json")
        return 0
    missing = [flag for flag, value in (("--data", args.data), ("--tokenizer", args.tokenizer)) if not value]
    if missing:
        raise ConfigError(f"experiment {args.name!r} trains runs and needs {' and '.join(missing)}")
    # Every ExperimentOptions field that has an option of the same name, plus those that do not.
    given = {"tokenizers": args.tokenizer, "budget": Budget(steps=args.steps, minutes=args.minutes),
             "command": explicit_command(args, args.parser), "progress": not args.no_progress,
             "results_file": Path(args.results_md)}
    parsed = vars(args)
    named = {f.name: parsed[f.name] for f in dataclasses.fields(ExperimentOptions) if f.name not in given and f.name in parsed}
    opts = ExperimentOptions(**named, **given)
    result = run_experiment(args.name, opts)
    for f in result["findings"]:
        print(f)
    print(f"wrote {Path(args.out) / recipe_key(args.name, opts.axis)}/results.json and updated {args.results_md}")
    return 0


def _synth_bc(args: argparse.Namespace) -> int:
    """Behaviour cloning on real episodes vs real + world-model episodes, scored in the real simulator."""
    from hma.experiments.synth_bc import synth_bc_experiment
    from hma.errors import ConfigError

    if args.repeats < 1:
        raise ConfigError(f"--repeats {args.repeats} is invalid, expected an integer >= 1")
    synth_bc_experiment(args.run, args.embodiment, out=args.out, seeds=range(args.seed, args.seed + args.repeats),
                        results_file=args.results_md, command=explicit_command(args, args.parser),
                        dataset=args.data, real_episodes=args.real_episodes,
                        synthetic_episodes=args.synthetic_episodes, eval_episodes=args.eval_episodes,
                        bc_steps=args.bc_steps, perturb=args.perturb, real_share=args.real_share,
                        bc_grid=args.bc_grid, bc_shift=args.bc_shift)
    print(f"updated {args.results_md}")
    return 0


def _curve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hma.experiments.curve import curve_experiment

    set_threads(args.threads)
    result = curve_experiment(args.run, args.data, args.out, results_file=Path(args.results_md),
                              command=explicit_command(args, args.parser), episodes=args.episodes,
                              horizon=args.horizon, seed=args.seed)
    for r in result["rows"]:
        print(f"{r['steps']:>7,} steps: ΔPSNR {r['delta']:.2f} dB, tokens right {r['tokens_all']:.3f} "
              f"(copy {r['tokens_copy']:.3f})")
    print(f"updated the curve section of {args.results_md}")
    return 0


def _policy_ranking(args: argparse.Namespace) -> int:
    from hma.experiments.policy_ranking import policy_eval_experiment
    from hma.errors import ConfigError

    if args.episodes < 1:
        raise ConfigError(f"--episodes {args.episodes} is invalid, expected an integer >= 1")
    pairs = [item.partition("=") for item in args.task_run]
    bad = [item for item, (name, eq, run) in zip(args.task_run, pairs) if not (name and eq and run)]
    if bad:
        raise ConfigError(f"--task-run {bad[0]!r} is invalid, expected EMBODIMENT=RUN")
    set_threads(args.threads)
    result = policy_eval_experiment(args.run, args.embodiments, out=args.out, results_file=args.results_md,
                                    command=explicit_command(args, args.parser), episodes=args.episodes,
                                    steps=args.frames, noises=args.noise, bc_steps=args.bc_steps, seed=args.seed,
                                    device=args.device, data=args.data,
                                    task_runs={name: run for name, _, run in pairs})
    print(f"target {'met' if result['met'] else 'not met'} on every task; updated {args.results_md}")
    return 0
