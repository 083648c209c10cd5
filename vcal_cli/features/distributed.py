"""Many processes through PyTorch's own engine: launched by `torchrun`, joined with torch.distributed.

Under torchrun (WORLD_SIZE > 1 in the environment) the first extraction joins the process group
(gloo: it only carries barriers and a broadcast, so it works the same for CPU and GPU ranks and across
hosts). A `DistributedSampler` over the shard indices decides which shards each rank extracts; every
rank writes its shards into the shared cache folder, rank 0 merges them into the one cache entry, and
every rank then reads that entry. The cache folder must therefore be visible to every rank (on several
hosts: a shared file system).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch.distributed as dist
from torch.utils.data import DistributedSampler

from vcal_cli.errors import WorkerFinished  # raised here, caught by the CLI

TIMEOUT = timedelta(hours=2)  # a rank may wait this long at a barrier for the slowest rank's shards
_released = False  # set once the workers have left: rank 0 then goes on as a single process


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shards(self, n_shards: int) -> list[int]:
        """The shard indices this rank extracts: torch's DistributedSampler over the shards, without its padding."""
        if self.size == 1:
            return list(range(n_shards))
        sampler = DistributedSampler(range(n_shards), num_replicas=self.size, rank=self.rank, shuffle=False)
        # the sampler pads its list by repeating the first shards (list position k*size + rank >= n_shards): skip those
        return [i for k, i in enumerate(sampler) if k * self.size + self.rank < n_shards]


def world() -> World:
    """This process's rank and the world size; joins the process group on first use under torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or _released:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=TIMEOUT)
        atexit.register(_leave)
    return World(dist.get_rank(), dist.get_world_size())


def release_workers() -> None:
    """End the distributed part of a command: ranks > 0 raise `WorkerFinished`, rank 0 goes on alone.

    Commands call this once the splits every rank helps extract are in the cache; what follows (metrics,
    head fitting, robustness evaluations, writing) runs on rank 0.
    """
    global _released
    if _released or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    w = world()
    w.barrier()
    _released = True
    if not w.main:
        raise WorkerFinished


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
