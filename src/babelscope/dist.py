"""DDP under torchrun: process-group setup and the few collectives the training loops need (LM and SAE)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init(device: str, timeout_s: float | None = None) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): gloo on CPU, NCCL on CUDA.
    `timeout_s`: how long a collective may wait for the slowest rank (torch's default: 10-30 minutes)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not tdist.is_initialized():
        timeout = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
        tdist.init_process_group("nccl" if device.startswith("cuda") else "gloo", **timeout)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    return Dist(tdist.get_rank(), tdist.get_world_size(), local)


def barrier(d: Dist) -> None:
    if d.enabled:
        tdist.barrier()


def mean(d: Dist, value: float) -> float:
    if not d.enabled:
        return value
    device = f"cuda:{d.local_rank}" if tdist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([value], dtype=torch.float64, device=device)
    tdist.all_reduce(t)
    return float(t) / d.world


def all_reduce_(tensors: list[torch.Tensor], world: int, average: bool = False) -> None:
    """In place: sum (or average) a list of tensors over ranks, in one flat all-reduce."""
    if world <= 1:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    tdist.all_reduce(flat)
    if average:
        flat /= world
    off = 0
    for t in tensors:
        t.copy_(flat[off:off + t.numel()].view_as(t))
        off += t.numel()


def broadcast_(tensors: list[torch.Tensor], world: int) -> None:
    """In place: every rank gets rank 0's values."""
    if world > 1:
        for t in tensors:
            tdist.broadcast(t, 0)


def shutdown(d: Dist) -> None:
    if d.enabled and tdist.is_initialized():
        tdist.destroy_process_group()
