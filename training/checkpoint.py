"""Checkpoints that resume exactly: adapter tensors, optimiser, schedule, every RNG, the step.

A resumed run must produce bit-identical weights to an uninterrupted one, so everything that
feeds randomness (torch's CPU generator for LoRA dropout, numpy, Python) is saved with the step.
Batches are a pure function of (seed, phase, stage, step) and need no state of their own.

Checkpoints are device-independent: every tensor is saved on the CPU and loaded with
``map_location="cpu"``, then copied into the model's parameters and the optimiser (whose
``load_state_dict`` moves its state to each parameter's device), so a GPU run resumes on the CPU
and the other way round. CUDA generator states are saved too and restored only where the same
number of GPUs is visible (SFT reseeds every step, so nothing depends on them across devices).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()  # CPU byte tensors, one per GPU
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor (in dicts, lists and tuples) detached and copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, meta: dict[str, Any], keep: int = 2) -> Path:
    """Write ``folder`` atomically (tmp + rename) and prune older siblings beyond ``keep``."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    torch.save(to_cpu({"trainable": trainable, "optimizer": optimizer.state_dict(),
                       "scheduler": scheduler.state_dict(), "rng": rng_state()}), tmp / "state.pt")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    siblings = sorted((p for p in folder.parent.glob(f"{folder.name.rsplit('-step', 1)[0]}-step*")
                       if p.is_dir() and not p.name.endswith(".tmp")), key=_step_of)
    for old in siblings[:-keep]:
        shutil.rmtree(old)
    return folder


def _step_of(path: Path) -> int:
    return int(path.name.rsplit("-step", 1)[1])


def latest_checkpoint(root: Path, prefix: str) -> Path | None:
    """Newest complete ``{prefix}-step{N}`` folder under ``root``."""
    found = [p for p in root.glob(f"{prefix}-step*") if p.is_dir() and (p / "meta.json").exists()
             and not p.name.endswith(".tmp")]
    return max(found, key=_step_of) if found else None


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any) -> dict[str, Any]:
    """Restore tensors, optimiser, schedule and RNGs (onto the model's devices); return the saved metadata."""
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in state["trainable"].items():
            params[name].copy_(tensor)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return json.loads((folder / "meta.json").read_text())
