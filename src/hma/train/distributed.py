"""One process or many under torchrun (DDP): this process's rank and device, and gathering to rank 0."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from hma.device import resolve_device


@dataclass
class Dist:
    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(0, 1, resolve_device())
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, device)


def gather_state(t: torch.Tensor, dist: Dist) -> list[torch.Tensor]:
    """Every rank's random state (uint8 tensors of equal length) on rank 0."""
    if dist.world_size == 1:
        return [t]
    local = t.to(dist.device)
    out = [torch.empty_like(local) for _ in range(dist.world_size)]
    torch_dist.all_gather(out, local)
    return [o.cpu() for o in out]
