"""Data-parallel training across processes (``torchrun``), one or many machines.

Launch: ``torchrun --nproc_per_node N -m reloc train ...``. Each process trains on its
shard of every epoch (``DistributedSampler``); after every backward pass the gradients of
the network being updated are averaged over all processes with ``all_reduce``, and its
BatchNorm buffers are broadcast from rank 0, which is what ``DistributedDataParallel``
does. We do it explicitly rather than wrapping the networks in DDP because ReLoc runs
each network in three roles (updated, frozen but differentiable, and inference only)
within one run, which DDP's reducer does not allow without re-wrapping.

Rank 0 alone writes logs and checkpoints. NCCL is used on CUDA, gloo on CPU.

Inference scales out the same way: ``torchrun --nproc_per_node N -m reloc localize ...``
(or ``reloc eval``) gives each process its :meth:`DistContext.shard` of the images, and
the results are merged with :meth:`DistContext.gather`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device_type: str) -> DistContext:
        """Join the process group torchrun describes in ``WORLD_SIZE``/``RANK``; single
        process otherwise."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    def local_device(self, device: torch.device) -> torch.device:
        """This process's device: ``cuda:LOCAL_RANK`` for a CUDA run with several processes
        (made current), else ``device`` itself."""
        if self.enabled and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def shard(self, items: list[Any]) -> list[tuple[int, Any]]:
        """This process's share of ``items`` with their indices: every ``world_size``-th
        from ``rank`` on, so the processes together take each item exactly once."""
        return list(enumerate(items))[self.rank :: self.world_size]

    def average_gradients(self, module: nn.Module) -> None:
        """Mean of every parameter gradient over processes (in one flat buffer)."""
        if not self.enabled:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every process."""
        if not self.enabled:
            return
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm statistics) to every process."""
        if not self.enabled:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order (a one-item list without a group)."""
        if not self.enabled:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group, after this process's last collective (a no-op alone)."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
