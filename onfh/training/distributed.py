"""Multi-process training with PyTorch DistributedDataParallel, started by ``torchrun``.

``torchrun --nproc_per_node G -m onfh train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; each process then trains on its own random batches and DDP averages the
gradients. Backends: NCCL on CUDA, gloo on CPU (and MPS, which has no collective backend of
its own). Only rank 0 writes files and prints progress, so outputs look the same as a
single-process run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a (possibly one-process) training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and prints progress."""
        return self.rank == 0


def context_from_environment(environ: dict[str, str] | None = None) -> DistributedContext:
    """Read the torchrun variables; a plain ``onfh train`` is rank 0 of 1."""
    env = os.environ if environ is None else environ
    world_size = int(env.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    return DistributedContext(
        rank=int(env.get("RANK", "0")),
        world_size=world_size,
        local_rank=int(env.get("LOCAL_RANK", "0")),
    )


def backend_for(device_type: str) -> str:
    """The collective backend for a device type: ``nccl`` for CUDA, ``gloo`` otherwise."""
    return "nccl" if device_type == "cuda" else "gloo"


def initialise(context: DistributedContext, device_type: str) -> None:
    """Join the process group (no-op for a single process or if already joined)."""
    if not context.is_distributed:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend_for(device_type), rank=context.rank, world_size=context.world_size
        )


def shutdown(context: DistributedContext) -> None:
    """Leave the process group so torchrun sees a clean exit."""
    if not context.is_distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    """Wait for every process (no-op for a single process)."""
    if not context.is_distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def wrap(module, context: DistributedContext, device):
    """Wrap ``module`` in DistributedDataParallel when several processes train, else return it."""
    if not context.is_distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(module, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(module)
