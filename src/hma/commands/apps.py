"""`hma play`, `hma policy-eval`, `hma synth`: the world model used as a simulator."""

from __future__ import annotations

import argparse

from hma.commands import add_progress
from hma.commands.argtypes import DEVICE_HELP, device, non_negative_float, non_negative_int, port, positive_int
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")


# hma.run.pretrained.DEFAULT_RUN, spelled out: importing it would load torch for every CLI call.
SHIPPED_RUN = "hma-tiny"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("play", help="drive the world model with the keyboard in a browser")
    p.add_argument("--run", default=SHIPPED_RUN,
                   help=f"trained run folder, a shipped run's name or a Hub name ORG/NAME (default: {SHIPPED_RUN}, "
                        "the model that comes with hma)")
    p.add_argument("--embodiment", required=True, help="robot to drive (one the run was trained on)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but loopback lets other machines drive the model")
    p.add_argument("--port", type=port, default=8000, help="port to listen on, 0-65535 (0 picks a free one)")
    p.add_argument("--keymap", default=None, help='JSON file {"KeyName": {"dim": int, "value": -1..1}}')
    p.add_argument("--dataset", default=None, help="dataset for contexts and action bounds (default: the run's)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the context episode drawn at reset and of sampling")
    p.add_argument("--record-dir", default=".", help="where recordings are written")
    p.add_argument("--record-format", choices=["gif", "mp4"], default="gif", help="file format of recordings")
    p.add_argument("--idle", choices=["auto", "hold", "zero"], default="auto",
                   help="the action with no key held: hold = stay where the robot is, keys move its target (a robot "
                        "whose action is a target position); zero = the zero action (velocities, deltas, torques); "
                        "auto (default): hold for pusht, zero for the others")
    p.add_argument("--device", type=device, default=None, help=DEVICE_HELP)
    p.set_defaults(func=_play)

    p = sub.add_parser("policy-eval", help="success rates of policies in the real simulator and in the world model")
    p.add_argument("--run", required=True, help="trained run folder (the world model) or its Hub name ORG/NAME")
    p.add_argument("--embodiment", required=True, help="robot whose simulator and world model score the policies")
    p.add_argument("--policies", nargs="+", default=None,
                   help="expert:NOISE, random, bc:CHECKPOINT, world-model or MODULE:FACTORY (a policy with act/reset or "
                        "LeRobot's select_action/reset; default: experts at noise 0, 0.3, 0.6, 1.0, and random)")
    p.add_argument("--episodes", type=positive_int, default=10, help="episodes per policy")
    p.add_argument("--frames", type=positive_int, default=None, help="frames per episode (default: the simulator's episode length)")
    p.add_argument("--dataset", default=None, help="real dataset with success flags (default: the run's)")
    p.add_argument("--out", default="policy_eval", help="folder for report.json and correlation.png")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the episodes' starts and of the policies' noise")
    p.add_argument("--results-md", default=None, help="also write the table into this results file (e.g. docs/results.md)")
    p.add_argument("--device", type=device, default=None, help=DEVICE_HELP)
    add_progress(p)
    p.set_defaults(func=_policy_eval)

    p = sub.add_parser("synth", help="generate synthetic trajectories with the world model into a dataset")
    p.add_argument("--run", required=True, help="trained run folder (the world model) or its Hub name ORG/NAME")
    p.add_argument("--embodiment", required=True, help="robot to generate episodes of")
    p.add_argument("--episodes", type=positive_int, required=True, help="episodes to generate")
    p.add_argument("--out", required=True, help="dataset folder to write (resumable)")
    p.add_argument("--policy", default=None,
                   help="bc:CHECKPOINT, world-model, random or MODULE:FACTORY (as for policy-eval); default: perturbed "
                        "recorded actions")
    p.add_argument("--perturb", type=non_negative_float, default=0.1, help="noise std on recorded actions, fraction of their range")
    p.add_argument("--frames", type=positive_int, default=None, help="frames per episode (default: the source episode's)")
    p.add_argument("--dataset", default=None, help="dataset of contexts and recorded actions (default: the run's)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the contexts, the perturbations and sampling")
    p.add_argument("--device", type=device, default=None, help=DEVICE_HELP)
    add_progress(p)
    p.set_defaults(func=_synth)


def _play(args: argparse.Namespace) -> int:
    from hma.envs.play import make_play_server

    if args.host not in LOOPBACK:
        print(f"hma play: warning: listening on {args.host}, not loopback: anyone who can reach this machine "
              "can drive the model and write recordings", file=sys.stderr, flush=True)
    server = make_play_server(args.run, args.embodiment, host=args.host, port=args.port, keymap=args.keymap,
                              dataset=args.dataset, seed=args.seed, record_dir=args.record_dir,
                              record_format=args.record_format, device=args.device, idle=args.idle)
    print(f"hma play: open {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _policy_eval(args: argparse.Namespace) -> int:
    from hma.apps.policy_eval import evaluate_policies

    report = evaluate_policies(args.run, args.embodiment, policies=args.policies, episodes=args.episodes,
                               steps=args.frames, dataset=args.dataset, out=args.out, seed=args.seed,
                               device=args.device)
    print(report.table())
    if args.results_md:
        _write_policy_eval_section(args, report)
    return 0


def _write_policy_eval_section(args: argparse.Namespace, report) -> None:
    """Record the run in docs/results.md: the command, the date and the table it printed."""
    from pathlib import Path

    from hma.experiments.results import policy_eval_section, shown_command, update_results_section

    command = shown_command(vars(args).get("argv", sys.argv[1:]))
    update_results_section(Path(args.results_md), "policy-eval", policy_eval_section(report, command))
    print(f"updated {args.results_md}")


def _synth(args: argparse.Namespace) -> int:
    from hma.apps.synth import synthesize

    store = synthesize(args.run, args.embodiment, episodes=args.episodes, out=args.out, policy=args.policy,
                       perturb=args.perturb, steps=args.frames, dataset=args.dataset, seed=args.seed,
                       device=args.device)
    print(store)
    return 0
