"""Training throughput (tokens/s) of the world model presets on random tokens.

    python benchmarks/bench_train.py [--presets tiny base] [--steps 5] [--batch-size 4] [--precisions fp32 bf16]

Times full optimizer steps (MaskGIT loss, backward, AdamW) after one warm-up step, on
whatever device is available, once per autocast precision (``hma train --precision``),
alternating so a drifting machine speed hits both alike; prints the bf16/fp32 ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from hma.config import EmbodimentSpec, preset
from hma.model import WorldModel


def bench(name: str, *, steps: int, batch_size: int, vocab: int, device: torch.device, bf16: bool) -> float:
    spec = EmbodimentSpec("robot", 7, 1, [0.0] * 7, [1.0] * 7)
    config = preset(name, vocab_size=vocab, vocab_factors=1, embodiments={"robot": spec})
    torch.manual_seed(0)
    model = WorldModel(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator(device=device).manual_seed(0)
    t, (h, w) = config.num_frames, config.grid
    batch = {"frames": torch.randint(0, vocab, (batch_size, t, h, w), device=device, generator=g),
             "actions": torch.randn(batch_size, t, 7, device=device, generator=g), "embodiment": "robot"}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    for i in range(steps + 1):
        if i == 1:  # the first step pays for allocation and kernel selection
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast:
            loss, _ = model.loss(batch, generator=g)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return batch_size * t * h * w / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "base"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096, help="token vocabulary (a tokenizer's size)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=2, help="alternations of the precisions")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch_size}")
    for name in args.presets:
        rates: dict[str, list[float]] = {p: [] for p in args.precisions}
        for _ in range(args.repeats):
            for p in args.precisions:
                rates[p].append(bench(name, steps=args.steps, batch_size=args.batch_size, vocab=args.vocab,
                                      device=device, bf16=p == "bf16"))
        best = {p: max(r) for p, r in rates.items()}
        line = "  ".join(f"{p} {best[p]:,.0f}" for p in args.precisions)
        ratio = f"  bf16/fp32 {best['bf16'] / best['fp32']:.2f}x" if {"fp32", "bf16"} <= set(best) else ""
        print(f"{name:>5}: training tokens/s (best of {args.repeats}) {line}{ratio}")


if __name__ == "__main__":
    main()
