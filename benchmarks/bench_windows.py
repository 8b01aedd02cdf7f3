"""Window-loading throughput from the episode store (target: >= 2000 windows/s, 8 frames, 64x64).

Writes a synthetic 64x64 dataset to a temporary folder, then times random batches of
windows read through WindowDataset from the memory-mapped store (page cache warm, as in
training after the first epoch) and, for scale, the raw memmap gather alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter
from hma.data.windows import WindowDataset


def build(root: Path, episodes: int, length: int, size: int, control_hz: float) -> EpisodeStore:
    rng = np.random.default_rng(0)
    info = DatasetInfo(embodiment="bench", simulator="synthetic", action_names=[f"a{i}" for i in range(7)],
                       control_hz=control_hz, image_size=(size, size))
    w = StoreWriter(root, info)
    for _ in range(episodes):
        w.add_episode(rng.integers(0, 255, (length, size, size, 3), dtype=np.uint8),
                      rng.normal(size=(length, 7)).astype(np.float32))
    return w.finalize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--length", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'control rate':>12} {'windows/s':>10} {'MB/s':>8}")
        for hz in (10.0, 20.0):
            store = build(Path(tmp) / f"d{int(hz)}", args.episodes, args.length, 64, hz)
            ds = WindowDataset(store, num_frames=args.frames)
            rng = np.random.default_rng(1)
            for _ in range(10):  # warm the page cache
                ds.get_batch(rng.integers(0, len(ds), args.batch_size))
            t = time.perf_counter()
            for _ in range(args.batches):
                b = ds.get_batch(rng.integers(0, len(ds), args.batch_size))
            dt = time.perf_counter() - t
            n = args.batches * args.batch_size
            mb = n * b["frames"][0].nbytes / 1e6
            print(f"{hz:>10.0f}Hz {n / dt:>10.0f} {mb / dt:>8.0f}")


if __name__ == "__main__":
    main()
