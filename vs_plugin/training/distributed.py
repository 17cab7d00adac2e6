"""Multi-process training through PyTorch's own machinery (torchrun + DistributedDataParallel).

``torchrun --nproc_per_node=N -m vs_plugin compress ...`` sets RANK, WORLD_SIZE and LOCAL_RANK;
:func:`init_distributed` reads them, starts the process group (NCCL for CUDA devices, gloo on
CPU) and tells each rank which device to use. A single process without those variables gets a
context of world size 1 and nothing distributed happens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE_PROCESS = DistributedContext()


def is_main_process() -> bool:
    """True unless this is a non-zero rank of an initialised process group."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def shutdown() -> None:
    """Leave the process group, if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> DistributedContext:
    """Join (or start) the process group torchrun describes; world size 1 when not under torchrun."""
    if not launched_by_torchrun():
        return SINGLE_PROCESS
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistributedContext(rank, world_size, local_rank, backend)


def process_device(device: torch.device, context: DistributedContext) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA, else ``device``."""
    if device.type == "cuda" and context.enabled:
        return torch.device("cuda", context.local_rank)
    return device


def all_reduce_sum(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Sum ``values`` over ranks (returns a new tensor; identity for one process)."""
    if not context.enabled:
        return values
    reduced = values.clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced


def broadcast_object(obj: Any, context: DistributedContext) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; for checkpoints and settings)."""
    if not context.enabled:
        return obj
    holder = [obj if context.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(obj: Any, context: DistributedContext) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not context.enabled:
        return [obj]
    gathered: list = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()
