"""Tokenizer throughput (target: encode+decode >= 200 frames/s, batch 64, 64x64, on the CPU).

Times the default architectures (weights do not change the speed, so untrained models
are fine) or the tokenizer folders given with --tokenizer, best of several repeats. The
machine is shared, so it also reports frames per CPU-second of this process: with one
thread that is what an otherwise idle core would deliver, whatever the load.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from hma.tokenizer.config import TokenizerConfig
from hma.tokenizer.loading import load_tokenizer
from hma.tokenizer.modeling import ConvAutoencoder
from hma.tokenizer.protocol import Tokenizer
from hma.tokenizer.conv import ConvTokenizer


def roundtrip_rates(tok: Tokenizer, batch_size: int, repeats: int) -> tuple[float, float]:
    """(wall-clock, CPU-time) encode+decode frames/s, best of ``repeats`` after a warm-up."""
    h, w = tok.image_size
    batch = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(batch_size, h, w, 3), dtype=np.uint8))
    tok.decode(tok.encode(batch))  # warm-up
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        tok.decode(tok.encode(batch))
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return batch_size / wall, batch_size / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", nargs="*", default=[], help="tokenizer folders (default: the default discrete and continuous architectures)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice, all cores)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tokenizer:
        tokenizers = [load_tokenizer(p) for p in args.tokenizer]
    else:
        torch.manual_seed(0)
        tokenizers = [ConvTokenizer(ConvAutoencoder(TokenizerConfig(kind=k, name=f"default-{k}"))) for k in ("discrete", "continuous")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, load average {os.getloadavg()[0]:.1f}")
    for tok in tokenizers:
        wall, cpu = roundtrip_rates(tok, args.batch_size, args.repeats)
        h, w = tok.image_size
        print(f"{tok.name:<20} {tok.kind:<11} {h}x{w} -> {tok.grid[0]}x{tok.grid[1]}: encode+decode {wall:6.0f} frames/s wall clock, "
              f"{cpu:6.0f} frames per CPU-second")


if __name__ == "__main__":
    main()
