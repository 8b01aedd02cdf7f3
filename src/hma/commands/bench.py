"""`hma bench`: seconds per generated frame of MaskGIT (cached, uncached), MAR and the diffusion baseline."""

from __future__ import annotations

import argparse

from hma.commands import add_progress
from hma.commands.argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure generation speed per frame (random weights)")
    p.add_argument("--json", dest="json_out", default=None, help="write the results to this JSON file")
    p.add_argument("--presets", nargs="+", default=["tiny", "base"], help="model presets to measure")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed frames per measurement (median reported)")
    p.add_argument("--methods", nargs="+", default=["maskgit", "mar", "diffusion"],
                   help="any of maskgit, mar, diffusion")
    p.add_argument("--maskgit-steps", type=positive_int, default=2, help="MaskGIT unmasking steps per frame")
    p.add_argument("--mar-diffusion-steps", type=positive_int, default=None,
                   help="diffusion-head steps per MAR token (default: MAR's, 10; the paper's is 100)")
    p.add_argument("--diffusion-steps", type=positive_int, default=50, help="DDIM steps of the diffusion baseline")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: every core)")
    # hma.sampling.precision.PRECISIONS, spelled out: importing it would load torch for every CLI call.
    p.add_argument("--precision", nargs="+", default=["auto"], choices=("auto", "fp32", "bf16", "int8"),
                   help="arithmetic of cached MaskGIT and MAR, each measured beside fp32 (the others run at fp32); "
                        "auto: int8 on a CPU with VNNI or AMX, else fp32")
    p.add_argument("--batch", nargs="+", type=positive_int, default=[1],
                   help="batch sizes of cached MaskGIT and MAR (rollouts stepped together); beside them the fp32 "
                        "matmul peak of this machine and the fraction of it reached")
    p.add_argument("--compile", action="store_true",
                   help="also run cached MaskGIT and MAR with the trunk through torch.compile (compile time reported "
                        "apart; graphs cached on disk for later runs)")
    p.add_argument("--results-md", default=None, help="also write the table into this results file (e.g. docs/results.md)")
    add_progress(p)
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    import os
    import platform

    from hma.config import PRESETS
    from hma.errors import ConfigError
    from hma.io import atomic_write_json
    from hma.sampling.bench import (BenchSettings, format_table, format_throughput, matmul_peak, results_json,
                                    run_bench)
    from hma.sampling.precision import resolve as resolve_precision

    for name in args.presets:
        if name not in PRESETS:
            raise ConfigError(f"preset {name!r} is unknown, expected one of {', '.join(PRESETS)}")
    for method in args.methods:
        if method not in ("maskgit", "mar", "diffusion"):
            raise ConfigError(f"method {method!r} is unknown, expected maskgit, mar or diffusion")
    if args.repeats < 1:
        raise ConfigError(f"--repeats {args.repeats} is invalid, expected an integer >= 1")
    for b in args.batch:
        if b < 1:
            raise ConfigError(f"--batch {b} is invalid, expected batch sizes >= 1")
    choices = [resolve_precision(p, "cpu") for p in args.precision]  # the bench runs on the CPU
    for choice in choices:
        print(choice, flush=True)  # e.g. "precision auto -> int8 (avx512_vnni)"
    settings = BenchSettings(maskgit_steps=args.maskgit_steps, mar_diffusion_steps=args.mar_diffusion_steps,
                             diffusion_steps=args.diffusion_steps, repeats=args.repeats, methods=tuple(args.methods),
                             precisions=tuple(dict.fromkeys(["fp32", *(c.precision.value for c in choices)])),
                             batches=tuple(dict.fromkeys([1, *args.batch])), compile=args.compile)
    load_before = os.getloadavg()
    batched = any(b > 1 for b in settings.batches)
    # The peak is measured before and after the run and the higher taken: a busy or warm
    # machine only lowers it, and a low peak would flatter the fractions.
    peaks = [matmul_peak(threads=args.threads)] if batched else []
    results = run_bench(args.presets, settings, threads=args.threads)
    peaks += [matmul_peak(threads=args.threads)] if batched else []
    peak = max(peaks) if peaks else None
    machine = {"cpu_count": os.cpu_count(), "threads": args.threads or os.cpu_count(), "processor": platform.processor() or platform.machine(),
               "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
               "fp32_matmul_peak_gflops": peak, "fp32_matmul_peak_measurements": peaks,
               "precisions": [str(c) for c in choices]}
    print(format_table(results))
    if peak is not None:
        print(format_throughput(results, peak))
    print(f"load average before {load_before[0]:.2f}, after {machine['load_average_after'][0]:.2f} "
          f"on {machine['cpu_count']} cores")
    if args.json_out:
        atomic_write_json(args.json_out, results_json(results, machine))
    if args.results_md:
        _write_speed_section(args.results_md, results, machine, args.argv)
    return 0


def _write_speed_section(path: str, results, machine: dict, argv: list[str]) -> None:
    """The run's table and ratios as the ``speed`` section of docs/results.md, with command and date."""
    from pathlib import Path

    from hma.experiments.results import shown_command, speed_section, update_results_section
    from hma.sampling.bench import format_table, format_throughput

    ratios = [line for line in format_table(results).splitlines() if "/cached" in line]
    throughput = format_throughput(results, machine["fp32_matmul_peak_gflops"]) if machine["fp32_matmul_peak_gflops"] else None
    update_results_section(Path(path), "speed", speed_section(results, machine, ratios, shown_command(argv),
                                                              throughput=throughput))
    print(f"updated {path}")
