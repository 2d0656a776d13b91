"""Where a training stage runs: the ``device`` setting of each stage, checked at load, resolved at start.

Why a module of its own: the setting is validated when the recipe is read (a CUDA request on a
machine without CUDA must fail before any data is loaded, not in the first step), and the same
rule maps it to a ``torch.device`` in every stage, including one process per GPU under torchrun.

Accepted values: ``cpu``, ``cuda``, ``cuda:N`` and ``auto`` (``cuda`` when torch sees a GPU,
else ``cpu``; resolved when the recipe is loaded, so the stored config names the real device).
"""

from __future__ import annotations

import re

import torch

_PATTERN = re.compile(r"^(cpu|cuda|cuda:\d+|auto)$")


def check_device(value: str) -> str:
    """The validated setting (``auto`` resolved); ``ValueError`` with the reason otherwise."""
    value = value.strip().lower()
    if not _PATTERN.match(value):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {value!r}")
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {value!r} was asked for, but torch.cuda.is_available() is False "
                             f"(torch {torch.__version__}: no GPU visible or a CPU-only build); "
                             "use device = 'cpu' or 'auto'")
        index = int(value.split(":")[1]) if ":" in value else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {value!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return value


def is_cuda(setting: str) -> bool:
    return setting.startswith("cuda")


def resolve_device(setting: str, local_rank: int = 0, multi_process: bool = False) -> torch.device:
    """The torch device of this process: ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per process).

    An explicit ``cuda:N`` under a multi-process launch is refused: every rank would share one GPU.
    """
    setting = check_device(setting)
    if not is_cuda(setting):
        return torch.device("cpu")
    if ":" in setting:
        if multi_process:
            raise ValueError(f"device {setting!r} pins every process to one GPU; use device = 'cuda' under "
                             "torchrun (each process takes cuda:LOCAL_RANK)")
        return torch.device(setting)
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK {local_rank} has no GPU: {torch.cuda.device_count()} visible; "
                         "start at most one process per GPU")
    return torch.device("cuda", local_rank)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a module's weights (inputs follow the weights, as in the service's runner)."""
    return next(model.parameters()).device
