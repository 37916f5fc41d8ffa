"""Devices and processes: the device of a run, the process group under ``torchrun``, the
shard of an epoch each process visits, and the ``DistributedDataParallel`` wrapper."""

from __future__ import annotations

import inspect
import os

import torch
from torch import nn

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """The device a run asks for, checked: ``"auto"`` (CUDA when available, else the CPU),
    ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.

    Args:
        device: the requested device.

    Returns:
        The ``torch.device``; a ValueError when it is malformed or CUDA is not available.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):  # an int would mean cuda:N, silently
        raise ValueError(
            f"device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError, OverflowError):
        raise ValueError(
            f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device: CUDA was requested but is not available (this torch build or machine has "
            "no GPU; see docs/how-to/gpu.md)"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device: {device!r} does not exist (this machine has {torch.cuda.device_count()} "
            "CUDA devices)"
        )
    return dev


def setup_distributed(dev: torch.device) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, this process's device, whether the process group was created here)."""
    import torch.distributed as dist

    env_world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    available = dist.is_available()
    if available and dist.is_initialized():
        created = False
    elif env_world > 1:
        if not available:
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        created = True
    else:
        return 0, 1, dev, False
    rank, world = dist.get_rank(), dist.get_world_size()
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    return rank, world, dev, created


def teardown_distributed(created: bool) -> None:
    """Destroy the process group when ``setup_distributed`` created it."""
    if created:
        import torch.distributed as dist

        dist.destroy_process_group()


def wrap_data_parallel(module: nn.Module, dev: torch.device, world: int) -> nn.Module:
    """``module`` itself on one process, else ``DistributedDataParallel(module)``. The grids
    are fixed buffers, equal on every rank: they are not synchronised at each step."""
    if world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    params = inspect.signature(DistributedDataParallel).parameters
    sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(
        module, device_ids=[dev.index] if dev.type == "cuda" else None, **{sync: False}
    )


def all_reduce_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    """Sum ``t`` over the processes in place (nothing on one process)."""
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


class _Sized:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> torch.Tensor:
    """The sample indices this process visits in ``epoch``: randperm(n) with a generator
    seeded ``seed + epoch``; with several processes, ``DistributedSampler``'s shard (padded
    to a multiple of the world size, then every world-th index from ``rank``)."""
    if world == 1:
        g = torch.Generator().manual_seed(seed + epoch)
        return torch.randperm(n, generator=g)
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(
        _Sized(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` (or the model itself)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def model_device(model: nn.Module) -> torch.device:
    """The device of the first parameter (or buffer); the CPU for an empty module."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the first floating parameter (torch's default for none)."""
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()
