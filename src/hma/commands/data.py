"""`hma data ...`: generate, inspect, import and export robot datasets."""

from __future__ import annotations

import argparse
import os

from hma.commands import add_progress
from hma.commands.argtypes import non_negative_int, positive_int, share

# hma.data.sim.suite.SUITES, spelled out: importing it costs every CLI call a third of a second.
SUITE_NAMES = ("tiny", "default", "long", "pretrain")


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="generate, inspect, import and export datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    p = dsub.add_parser("generate", help="make a multi-embodiment dataset suite with physics simulators")
    p.add_argument("--suite", default="tiny", choices=SUITE_NAMES,
                   help="which robots, how many episodes, how long (long: whole episodes of 4 cheap simulators, "
                        "for `hma experiment long-horizon`; pretrain: the shipped world model's pre-training data)")
    p.add_argument("--out", required=True, help="output folder (one dataset folder per embodiment)")
    p.add_argument("--episodes", type=positive_int, default=None, help="episodes per embodiment (suite default if omitted)")
    p.add_argument("--image-size", type=positive_int, default=64, help="square frame size in pixels")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of every episode (episode e of robot r has its own stream)")
    p.add_argument("--embodiments", nargs="*", default=None, help="only these embodiments of the suite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace finished datasets instead of skipping them (each new one is built beside the old "
                        "and swapped in when complete: a failure or a kill before that keeps the old one)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="processes generating episode ranges at once (default: the usable CPU cores); 1 generates "
                        "in this process, one embodiment after another; the data are the same either way")
    p.add_argument("--no-counterfactual", dest="counterfactual", action="store_false",
                   help="skip the counterfactual branches of the held-out episodes (DATASET/counterfactual/)")
    p.add_argument("--branch-every", type=positive_int, default=None, metavar="FRAMES",
                   help="frames between branch points of a held-out episode (default 2); larger is cheaper, "
                        "for slow simulators such as robosuite")
    p.add_argument("--demonstrations", type=share, default=None, metavar="NOISE",
                   help="expert-only episodes with Gaussian action noise NOISE x half the action range (e.g. 0.02), "
                        "the demonstrations behaviour cloning learns from; by default episodes mix the expert "
                        "with random exploration, which is what world models learn from")
    p.add_argument("--coverage", action="store_true",
                   help="widen the default mix to the actions of the policies a world model will rank: expert noise "
                        "up to 1.5 x half the action range, half of the random segments i.i.d. uniform")
    p.add_argument("--verbose", action="store_true",
                   help="show the simulators' own warnings and log lines (robosuite, Meta-World, gymnasium, MuJoCo), "
                        "hidden by default")
    add_progress(p)
    p.set_defaults(func=_generate)

    p = dsub.add_parser("info", help="print a table of datasets: robot, simulator, sizes, task; which are synthetic")
    p.add_argument("paths", nargs="+", help="dataset folders or folders of datasets")
    p.add_argument("--verify", action="store_true", help="also check file checksums")
    p.set_defaults(func=_info)

    p = dsub.add_parser("preview", help="write a contact sheet of frames per embodiment")
    p.add_argument("paths", nargs="+", help="dataset folders or folders of datasets")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--frames", type=positive_int, default=8, help="frames per embodiment")
    p.set_defaults(func=_preview)

    p = dsub.add_parser("import-lerobot", help="convert a LeRobotDataset (v2.1 or v3.0) folder to the native format")
    p.add_argument("src", help="LeRobotDataset folder (meta/info.json, data/, videos/) or its Hub name ORG/NAME")
    p.add_argument("out", help="native dataset folder to write")
    p.add_argument("--camera", default=None,
                   help="video/image feature key, e.g. observation.images.front (default: the first scene camera: "
                        "front, top, agentview, ...; wrist and hand cameras last)")
    p.add_argument("--only-camera", action="store_true",
                   help="keep only the --camera (or default) camera; by default every other camera is kept too")
    p.add_argument("--embodiment", default=None, help="embodiment name (default: robot_type or folder name)")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="resize frames to this square size (default: keep the source's frame size)")
    add_progress(p)
    p.set_defaults(func=_import_lerobot)

    p = dsub.add_parser("export-lerobot", help="write a native dataset as a LeRobotDataset v3.0 folder")
    p.add_argument("src", help="native dataset folder")
    p.add_argument("out", help="LeRobotDataset v3.0 folder to write")
    p.add_argument("--codec", default="libsvtav1", help="video codec (libsvtav1, libx264, ...)")
    p.add_argument("--crf", type=non_negative_int, default=None,
                   help="encoder quality, lower is better (default: 30 for AV1, as LeRobot; 18 for the others)")
    p.add_argument("--gop", type=positive_int, default=None, help="frames between keyframes (default: 2, as LeRobot)")
    add_progress(p)
    p.set_defaults(func=_export_lerobot)


def _generate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from hma.data.sim.rollout import BehaviourMix
    from hma.data.sim.suite import coverage, demonstrations, generate_suite, get_suite

    from hma.errors import ConfigError

    if args.branch_every is not None and args.branch_every < 1:
        raise ConfigError(f"--branch-every {args.branch_every} is invalid; expected a positive number of frames")
    plan = None
    if args.counterfactual:
        plan = get_suite(args.suite).branches
        if args.branch_every is not None:
            plan = replace(plan, every_frames=args.branch_every)
    if args.coverage and args.demonstrations is not None:
        raise ConfigError("--coverage and --demonstrations were both given, expected one of them: "
                          "demonstrations follow the expert only")
    mix = coverage() if args.coverage else BehaviourMix() if args.demonstrations is None else demonstrations(args.demonstrations)
    generate_suite(args.suite, args.out, episodes=args.episodes, image_size=args.image_size,
                   seed=args.seed, embodiments=args.embodiments, overwrite=args.overwrite, branches=plan, mix=mix,
                   workers=usable_cpus() if args.workers is None else args.workers, verbose=args.verbose)
    from hma.data.inspect import info_table

    print(info_table([args.out]))
    return 0


def _info(args: argparse.Namespace) -> int:
    from hma.data.inspect import info_table

    print(info_table(args.paths, verify=args.verify))
    return 0


def _preview(args: argparse.Namespace) -> int:
    from hma.data.inspect import preview

    preview(args.paths, args.out, frames_per_embodiment=args.frames)
    print(f"wrote {args.out}")
    return 0


def _import_lerobot(args: argparse.Namespace) -> int:
    from hma.data.lerobot import import_lerobot

    store = import_lerobot(args.src, args.out, camera=args.camera, all_cameras=not args.only_camera,
                           embodiment=args.embodiment, image_size=args.image_size)
    lerobot = store.meta.get("extra", {}).get("lerobot", {})
    cameras = lerobot.get("cameras") or []
    if len(cameras) > 1:
        kept = f"; also kept: {', '.join(store.cameras)}" if store.cameras else ""
        print(f"trains on camera {lerobot['camera']} (of {', '.join(cameras)}; --camera picks another){kept}")
    print(store)
    return 0


def _export_lerobot(args: argparse.Namespace) -> int:
    from hma.data.lerobot import export_lerobot

    report = export_lerobot(args.src, args.out, codec=args.codec, crf=args.crf, gop=args.gop)
    print(report)
    return 0
