"""Multi-process training (DDP) for the CPU (gloo) and GPUs (NCCL), launched by ``torchrun``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and the rendezvous
address; :func:`init` reads them and joins the process group (a single process without them is a
world of one and nothing here does any communication). Data parallelism is done by hand rather
than with ``DistributedDataParallel`` because the training step runs only parts of the model (the
cached encoder split): each rank takes a stride of the step's global batch, the loss is the token
sum over the global token count, and :func:`sum_gradients` all-reduces (sums) the LoRA gradients,
so the update equals the single-process one for the same global batch. Only rank 0 writes.
With ``device = "cuda"`` each process owns ``cuda:LOCAL_RANK`` and the collectives run over NCCL on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from training.device import is_cuda


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def init(backend: str | None = None, device: str = "cpu") -> World:
    """Join the process group torchrun describes (idempotent); a world of one without torchrun.

    ``device`` is the stage's setting: with ``cuda`` each process first binds ``cuda:LOCAL_RANK``
    (``torch.cuda.set_device``, so NCCL and every bare ``cuda`` tensor use that GPU) and the group
    uses NCCL; otherwise gloo. ``backend`` or ``MEGAASR_DIST_BACKEND`` override the choice.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if is_cuda(device):
            torch.cuda.set_device(local_rank)
        backend = backend or os.environ.get("MEGAASR_DIST_BACKEND") or ("nccl" if is_cuda(device) else "gloo")
        dist.init_process_group(backend=backend)
    return World(dist.get_rank(), dist.get_world_size(), local_rank,
                 int(os.environ.get("LOCAL_WORLD_SIZE", str(size))))


def _comm_device() -> torch.device:
    """Where collective buffers must live: this process's GPU for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def current() -> World:
    """The world this process is in (after :func:`init`), or a world of one."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                 int(os.environ.get("LOCAL_WORLD_SIZE", str(dist.get_world_size()))))


def shard(rows: list, world: World) -> list:
    """This rank's stride of a global batch (``rows[rank::size]``)."""
    return rows[world.rank::world.size] if world.active else rows


def all_sum(value: float | torch.Tensor, world: World) -> torch.Tensor:
    """Sum of a scalar over the ranks (a float64 tensor; the value itself in a world of one)."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().clone()
    if world.active:
        t = t.to(_comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu()


def sum_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """All-reduce (sum) the gradients of ``params`` in one flat buffer; missing grads count as zero."""
    if not world.active or not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def broadcast_parameters(params: list[torch.nn.Parameter], world: World) -> None:
    """Make every rank start from rank 0's values."""
    if world.active:
        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=0)


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()
