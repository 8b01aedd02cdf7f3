"""Training throughput (tokens/s) of the world model presets on random tokens.

    python benchmarks/bench_train.py [--presets tiny base] [--steps 5] [--batch-size 4]

Times full optimizer steps (MaskGIT loss, backward, AdamW) after one warm-up step, on
whatever device is available (bf16 autocast on CUDA, as in training).
"""

from __future__ import annotations

import argparse
import time

import torch

from hma.config import EmbodimentSpec, preset
from hma.model import WorldModel


def bench(name: str, *, steps: int, batch_size: int, vocab: int, device: torch.device) -> float:
    spec = EmbodimentSpec("robot", 7, 1, [0.0] * 7, [1.0] * 7)
    config = preset(name, vocab_size=vocab, vocab_factors=1, embodiments={"robot": spec})
    torch.manual_seed(0)
    model = WorldModel(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator(device=device).manual_seed(0)
    t, (h, w) = config.num_frames, config.grid
    batch = {"frames": torch.randint(0, vocab, (batch_size, t, h, w), device=device, generator=g),
             "actions": torch.randn(batch_size, t, 7, device=device, generator=g), "embodiment": "robot"}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
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
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch_size}")
    for name in args.presets:
        rate = bench(name, steps=args.steps, batch_size=args.batch_size, vocab=args.vocab, device=device)
        print(f"{name:>5}: {rate:,.0f} training tokens/s")


if __name__ == "__main__":
    main()
