"""Tokenizer throughput (target: encode+decode >= 200 frames/s, batch 64, 64x64, on the CPU).

Times the default architectures (weights do not change the speed, so untrained models
are fine) or the tokenizer folders given with --tokenizer. Reports the best of several
repeats, since the machine is shared and the best run is the least disturbed one.
"""

from __future__ import annotations

import argparse

import torch

from hma.tokenizer.config import TokenizerConfig
from hma.tokenizer.evaluate import measure_throughput
from hma.tokenizer.loading import load_tokenizer
from hma.tokenizer.modeling import ConvAutoencoder
from hma.tokenizer.trained import ConvTokenizer


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
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    for tok in tokenizers:
        enc, dec, both = measure_throughput(tok, batch_size=args.batch_size, repeats=args.repeats)
        h, w = tok.image_size
        print(f"{tok.name:<24} {tok.kind:<11} {h}x{w} -> {tok.grid[0]}x{tok.grid[1]}: encode {enc:7.0f} frames/s, "
              f"decode {dec:7.0f} frames/s, encode+decode {both:7.0f} frames/s")


if __name__ == "__main__":
    main()
