"""Generation speed: seconds per generated frame, the paper's Table 1 measure.

Every method runs on random weights of the same preset (speed does not depend on what
was learned), batch 1, fp32, under ``torch.inference_mode`` with all CPU threads. Each
measurement starts from a full window (the context plus two warm-up frames, so the
cache has already slid once), then times ``repeats`` single frames and reports the
median; decoding the frame to pixels with a random tokenizer of the same grid is timed
on its own. Methods:

- ``maskgit`` cached / uncached: the engine's two paths, K unmasking steps per frame;
- ``mar`` cached: MAR, each revealed token drawn by the diffusion head;
- ``diffusion``: the IRASim-style baseline, one DDIM step = one cached single-frame pass.

With ``batches``, cached MaskGIT and MAR also step B rollouts at once (many envs, as policy
evaluation runs them): env-frames per second and the FLOP rate they reach, beside the
machine's fp32 matmul peak measured in the same run (:func:`matmul_peak`). With
``compile``, cached MaskGIT and MAR also run with the trunk through ``torch.compile``; every
row records the seconds of its first frames (reset and two warm-up steps), so a compiled
row's excess over its eager twin is the compilation.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from hma.baselines.diffusion import DiffusionConfig, VideoDiffusion
from hma.sampling.ddim import DDIMEngine
from hma.config import EmbodimentSpec, ModelConfig, TokenKind, preset
from hma.model import WorldModel
from hma.sampling.engine import CacheMode, Engine
from hma.sampling.mar import MARSampling
from hma.sampling.maskgit import MaskGITSampling

ACTION_DIM = 7  # a 7-DoF arm (6 joints + gripper), one control step per frame
BENCH_IMAGE_SIZE = {"tiny": 64, "base": 256, "xl": 256}  # pixels; the paper's 256x256 for 16x16 grids


@dataclass
class BenchResult:
    preset: str
    method: str  # "maskgit" | "mar" | "diffusion"
    cached: bool
    steps: int  # unmasking steps (maskgit, mar) or DDIM steps (diffusion)
    sec_per_frame: float
    decode_sec_per_frame: float | None  # None: no tokenizer to decode with
    # Process CPU time per frame: with one thread, what an otherwise idle core would take;
    # on a shared machine it is the figure that other jobs disturb least.
    cpu_sec_per_frame: float = 0.0
    # Floating-point operations of one generated frame (matmuls and attention, counted by
    # torch.utils.flop_counter): the ratio a perfect implementation would reach.
    flops_per_frame: float | None = None
    precision: str = "fp32"
    batch: int = 1  # rollouts stepped together; the times and FLOPs are of one step of all of them
    compiled: bool = False  # the trunk ran through torch.compile
    warmup_sec: float = 0.0  # reset + the two warm-up steps: includes compilation when compiled

    @property
    def env_frames_per_s(self) -> float:
        return self.batch / self.sec_per_frame

    def clock(self, name: str) -> float:
        """One of the per-frame costs by name: sec_per_frame, cpu_sec_per_frame or flops_per_frame."""
        return {"sec_per_frame": self.sec_per_frame, "cpu_sec_per_frame": self.cpu_sec_per_frame,
                "flops_per_frame": self.flops_per_frame}[name]

    @property
    def gflops_per_s(self) -> float | None:
        return self.flops_per_frame / self.sec_per_frame / 1e9 if self.flops_per_frame else None


@dataclass(frozen=True)
class BenchSettings:
    maskgit_steps: int | None = None  # None: 2 (the paper's evaluation setting)
    mar_steps: int = 2
    mar_diffusion_steps: int | None = None  # head steps per MAR token; None: MAR's default (MARSampling)
    diffusion_steps: int = 50  # DDIM steps of the baseline
    repeats: int = 3
    methods: tuple[str, ...] = ("maskgit", "mar", "diffusion")
    precisions: tuple[str, ...] = ("fp32",)  # cached MaskGIT and MAR run at each; the rest at fp32
    batches: tuple[int, ...] = (1,)  # cached MaskGIT and MAR also run at each batch size; the rest at 1
    compile: bool = False  # cached MaskGIT and MAR also run compiled, at each precision but int8


def _model_config(name: str, kind: str) -> ModelConfig:
    spec = EmbodimentSpec(name="arm", action_dim=ACTION_DIM, chunk=1, mean=[0.0] * ACTION_DIM, std=[1.0] * ACTION_DIM)
    return preset(name, kind=kind, embodiments={"arm": spec})


def _tokenizer(config: ModelConfig, image_size: int):
    """A random-weight tokenizer of the model's grid, or None if hma.tokenizer cannot build one."""
    try:
        from hma.tokenizer.config import TokenizerConfig
        from hma.tokenizer.modeling import ConvAutoencoder
        from hma.tokenizer.conv import ConvTokenizer
    except ImportError:
        return None
    downsample = image_size // config.grid[0]
    if config.kind == TokenKind.DISCRETE:
        # Explicit FSQ levels whose product is the model's vocabulary (2^18 = 8^6 at base).
        levels = {2 ** 10: (8, 5, 5, 5), 2 ** 18: (8, 8, 8, 8, 8, 8)}.get(config.vocab_size)
        if levels is None:
            return None
        tcfg = TokenizerConfig(kind="discrete", image_size=(image_size, image_size), downsample=downsample,
                               fsq_levels=levels)
    else:
        tcfg = TokenizerConfig(kind="continuous", image_size=(image_size, image_size), downsample=downsample,
                               latent_channels=config.latent_channels)
    return ConvTokenizer(ConvAutoencoder(tcfg))


def _median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock and process-CPU seconds of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _flops(fn: Callable[[], object]) -> float:
    """Floating-point operations of one call: matmuls, plus CPU attention kernels that the
    counter does not know by default (counted as the same attention FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def attention(query, key, value, *args, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: attention}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return float(counter.get_total_flops())


def _context(config: ModelConfig, frames: int, generator: torch.Generator,
             batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    if config.kind == TokenKind.DISCRETE:
        tokens = torch.randint(0, config.vocab_size, (batch, frames, *config.grid), generator=generator)
    else:
        tokens = torch.randn(batch, frames, config.latent_channels, *config.grid, generator=generator)
    actions = torch.randn(batch, frames - 1, ACTION_DIM, generator=generator)
    return tokens, actions


def matmul_peak(*, size: int = 2048, repeats: int = 5, threads: int | None = None) -> float:
    """The fp32 FLOP rate (GFLOP/s) of a square matmul, median of ``repeats``, on ``threads``
    (default: every core, as :func:`run_bench`): the ceiling a generation step's matmuls could
    reach on this machine."""
    torch.set_num_threads(threads or os.cpu_count() or 1)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
    a @ b  # warm-up
    seconds, _ = _median_seconds(lambda: a @ b, repeats)
    return 2 * size**3 / seconds / 1e9


def _decode_seconds(tokenizer, frame: torch.Tensor, repeats: int) -> float | None:
    if tokenizer is None:
        return None
    tokenizer.decode(frame)  # warm-up
    return _median_seconds(lambda: tokenizer.decode(frame), repeats)[0]


@torch.inference_mode()
def bench_world_model(name: str, method: str, mode: CacheMode, settings: BenchSettings,
                      precision: str = "fp32", batch: int = 1, compile: bool = False) -> BenchResult:
    """Seconds per step of MaskGIT or MAR generation in steady state (window full), ``batch``
    rollouts at once (the trunk compiled with ``compile``)."""
    kind = "discrete" if method == "maskgit" else "continuous"
    config = _model_config(name, kind)
    torch.manual_seed(0)
    model = WorldModel(config).eval()
    if kind == TokenKind.DISCRETE:
        sampling = MaskGITSampling(steps=settings.maskgit_steps or 2)
    else:
        head = {} if settings.mar_diffusion_steps is None else {"diffusion_steps": settings.mar_diffusion_steps}
        sampling = MARSampling(steps=settings.mar_steps, **head)
    g = torch.Generator().manual_seed(0)
    context, actions = _context(config, config.num_frames - 1, g, batch)
    engine = Engine(model, embodiment="arm", mode=mode, sampling=sampling, precision=precision, compile=compile)
    action = torch.randn(batch, ACTION_DIM, generator=g)
    start = time.perf_counter()
    engine.reset(context, actions)
    for _ in range(2):  # the window fills, then slides once: steady state from here on
        frame = engine.step(action, g)
    warmup = time.perf_counter() - start
    seconds, cpu = _median_seconds(lambda: engine.step(action, g), settings.repeats)
    # torch's FLOP counter sees neither quantized linear layers nor compiled kernels: such a
    # count would be a fraction of the real one.
    flops = None if precision == "int8" or compile else _flops(lambda: engine.step(action, g))
    decode = _decode_seconds(_tokenizer(config, BENCH_IMAGE_SIZE[name]), frame, settings.repeats)
    return BenchResult(name, method, mode is CacheMode.CACHED, sampling.steps, seconds, decode, cpu, flops, precision,
                       batch, compile, warmup)


@torch.inference_mode()
def bench_diffusion(name: str, settings: BenchSettings) -> BenchResult:
    """Seconds per frame of the video diffusion baseline at the same trunk size."""
    config = _model_config(name, "continuous")
    torch.manual_seed(0)
    model = VideoDiffusion(DiffusionConfig.from_model_config(config)).eval()
    g = torch.Generator().manual_seed(0)
    context, actions = _context(config, config.num_frames - 1, g)
    action = torch.randn(1, ACTION_DIM, generator=g)
    rollout = DDIMEngine(model, embodiment="arm", steps=settings.diffusion_steps)
    rollout.reset(context, actions)  # (B, T0 - 1, k*A)
    for _ in range(2):
        frame = rollout.step(action, g)
    seconds, cpu = _median_seconds(lambda: rollout.step(action, g), settings.repeats)
    flops = _flops(lambda: rollout.step(action, g))
    decode = _decode_seconds(_tokenizer(config, BENCH_IMAGE_SIZE[name]), frame, settings.repeats)
    return BenchResult(name, "diffusion", True, rollout.steps, seconds, decode, cpu, flops)


def run_bench(presets: list[str], settings: BenchSettings, *, threads: int | None = None,
              log: Callable[[str], None] = print) -> list[BenchResult]:
    """Measure every method at every preset; ``log`` gets one line per finished measurement.

    ``threads`` defaults to every core: speed is what is measured here. On a busy machine
    fewer threads can be faster (OpenMP threads wait for each other).
    """
    torch.set_num_threads(threads or os.cpu_count() or 1)
    results = []
    for name in presets:
        jobs: list[Callable[[], BenchResult]] = []
        if "maskgit" in settings.methods:
            jobs += [lambda n=name, p=p: bench_world_model(n, "maskgit", CacheMode.CACHED, settings, p)
                     for p in settings.precisions]
            jobs.append(lambda n=name: bench_world_model(n, "maskgit", CacheMode.UNCACHED, settings))
        if "mar" in settings.methods:
            jobs += [lambda n=name, p=p: bench_world_model(n, "mar", CacheMode.CACHED, settings, p)
                     for p in settings.precisions]
        if "diffusion" in settings.methods:
            jobs.append(lambda n=name: bench_diffusion(n, settings))
        if settings.compile:
            jobs += [lambda n=name, m=m, p=p: bench_world_model(n, m, CacheMode.CACHED, settings, p, compile=True)
                     for m in ("maskgit", "mar") if m in settings.methods for p in settings.precisions if p != "int8"]
        for b in (b for b in settings.batches if b > 1):
            jobs += [lambda n=name, m=m, b=b: bench_world_model(n, m, CacheMode.CACHED, settings, "fp32", b)
                     for m in ("maskgit", "mar") if m in settings.methods]
        for job in jobs:
            result = job()
            results.append(result)
            log(f"{result.preset:5s} {result.method:9s} {'cached' if result.cached else 'uncached':8s} "
                f"{_prec(result):7s} batch {result.batch:3d} {result.sec_per_frame:8.4f} s/step "
                f"({result.cpu_sec_per_frame:.4f} s CPU, first frames {result.warmup_sec:.1f} s)")
    return results


def _prec(r: BenchResult) -> str:
    """The arithmetic of a row: its precision, "+c" when compiled."""
    return r.precision + ("+c" if r.compiled else "")


def format_table(results: list[BenchResult]) -> str:
    """Per-frame times with fps (with and without decoding) and, per preset, the ratios
    uncached / cached and diffusion / cached for MaskGIT, all from the same run."""
    lines = [f"{'preset':6s} {'method':9s} {'path':8s} {'prec':7s} {'steps':>5s} {'s/frame':>9s} {'decode s':>9s} "
             f"{'fps':>7s} {'fps+dec':>7s} {'cpu s':>9s} {'GFLOP':>8s} {'first s':>8s}"]
    for r in (r for r in results if r.batch == 1):
        dec = r.decode_sec_per_frame
        fps_dec = f"{1 / (r.sec_per_frame + dec):7.2f}" if dec is not None else "    n/a"
        dec_text = f"{dec:9.4f}" if dec is not None else "      n/a"
        lines.append(f"{r.preset:6s} {r.method:9s} {'cached' if r.cached else 'uncached':8s} {_prec(r):7s} {r.steps:5d} "
                     f"{r.sec_per_frame:9.4f} {dec_text} {1 / r.sec_per_frame:7.2f} {fps_dec} {r.cpu_sec_per_frame:9.4f} "
                     f"{r.flops_per_frame / 1e9 if r.flops_per_frame else float('nan'):8.2f} {r.warmup_sec:8.1f}")
    for name in dict.fromkeys(r.preset for r in results):
        for clock in ("sec_per_frame", "cpu_sec_per_frame", "flops_per_frame"):
            by = {(r.method, r.cached): r.clock(clock) for r in results
                  if r.preset == name and r.precision == "fp32" and r.batch == 1 and not r.compiled}
            cached = by.get(("maskgit", True))
            if not cached:
                continue
            parts = []
            if ("maskgit", False) in by:
                parts.append(f"maskgit uncached/cached = {by[('maskgit', False)] / cached:.1f}x")
            if ("diffusion", True) in by:
                parts.append(f"diffusion/maskgit cached = {by[('diffusion', True)] / cached:.1f}x")
            if ("mar", True) in by:
                parts.append(f"mar/maskgit cached = {by[('mar', True)] / cached:.1f}x")
            label = {"sec_per_frame": "wall", "cpu_sec_per_frame": "cpu", "flops_per_frame": "FLOPs"}[clock]
            if clock != "flops_per_frame":
                for r in results:
                    if r.preset == name and (r.precision != "fp32" or r.compiled) and r.batch == 1 and (r.method, r.cached) in by:
                        parts.append(f"{r.method} {_prec(r)}/fp32 = {r.clock(clock) / by[(r.method, r.cached)]:.2f}x")
            lines.append(f"{name} ({label}): " + ", ".join(parts))
        eager = {(r.method, r.precision): r.warmup_sec for r in results
                 if r.preset == name and r.cached and r.batch == 1 and not r.compiled}
        compiled = [f"{r.method} {r.precision} {r.warmup_sec - eager[(r.method, r.precision)]:.1f} s"
                    for r in results if r.preset == name and r.compiled and (r.method, r.precision) in eager]
        if compiled:
            lines.append(f"{name} (compile: first frames compiled minus eager): " + ", ".join(compiled))
    return "\n".join(lines)


def format_throughput(results: list[BenchResult], peak_gflops: float) -> str:
    """Cached fp32 MaskGIT and MAR at every batch size: env-frames/s and the fraction of the
    machine's fp32 matmul peak (measured in the same run) that their FLOPs reach."""
    rows = [r for r in results if r.cached and r.precision == "fp32" and r.method in ("maskgit", "mar")]
    lines = [f"fp32 matmul peak: {peak_gflops:.1f} GFLOP/s",
             f"{'preset':6s} {'method':9s} {'batch':>5s} {'s/step':>9s} {'env-fps':>9s} {'GFLOP/s':>9s} {'of peak':>8s}"]
    for r in sorted(rows, key=lambda r: (r.preset, r.method, r.batch)):
        rate = r.gflops_per_s
        share = f"{rate / peak_gflops:8.1%}" if rate else "     n/a"
        lines.append(f"{r.preset:6s} {r.method:9s} {r.batch:5d} {r.sec_per_frame:9.4f} {r.env_frames_per_s:9.2f} "
                     f"{rate if rate else float('nan'):9.1f} {share}")
    return "\n".join(lines)


def results_json(results: list[BenchResult], machine: dict) -> dict:
    return {"results": [asdict(r) for r in results], "machine": machine}
