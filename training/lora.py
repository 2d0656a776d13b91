"""LoRA scopes of the paper mapped onto Whisper, and the peft plumbing around them.

The paper's backbone (Qwen3-ASR) has an audio encoder, an aligner (projection into the LLM) and
an LLM decoder. Whisper has no separate projection, so:

=================  ==========================================  ==============================
Paper scope        Whisper modules                              Why
=================  ==========================================  ==============================
encoder            all encoder blocks (attn q/k/v/out, fc1/2)   the acoustic model
aligner            the top ``upper_blocks`` encoder blocks      the last acoustic layers before
                                                                 the decoder reads them (the
                                                                 paper's "encoder 20-23 + proj")
LLM                all decoder blocks: self-attn, cross-attn    the language model side
                   (q/k/v/out), fc1/2
=================  ==========================================  ==============================

Scopes used by the phases: ``upper_encoder`` (Phase I), ``decoder`` (Phase II), ``joint``
(Phase III: upper encoder + decoder, the original scripts' ``both``) and ``all`` (encoder + decoder).
"""

from __future__ import annotations

from typing import Literal

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model

Scope = Literal["upper_encoder", "encoder", "decoder", "joint", "all"]
_LINEARS = r"(self_attn\.(q_proj|k_proj|v_proj|out_proj)|encoder_attn\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)"


def encoder_block_ids(n_layers: int, upper_blocks: int, scope: Scope) -> list[int]:
    """Which encoder blocks a scope adapts."""
    if scope in ("encoder", "all"):
        return list(range(n_layers))
    if scope in ("upper_encoder", "joint"):
        return list(range(max(0, n_layers - upper_blocks), n_layers))
    return []


def target_regex(model_config, scope: Scope, upper_blocks: int) -> str:
    """peft ``target_modules`` regex (full match on module names) for a scope."""
    parts = []
    blocks = encoder_block_ids(model_config.encoder_layers, upper_blocks, scope)
    if blocks:
        parts.append(rf"model\.encoder\.layers\.({'|'.join(map(str, blocks))})\.{_LINEARS}")
    if scope in ("decoder", "joint", "all"):
        parts.append(rf"model\.decoder\.layers\.\d+\.{_LINEARS}")
    if not parts:
        raise ValueError(f"scope {scope!r} adapts nothing")
    return "|".join(f"({p})" for p in parts)


def add_lora(model: torch.nn.Module, scope: Scope, upper_blocks: int, r: int, alpha: int,
             dropout: float) -> PeftModel:
    """Freeze ``model`` and wrap it with a fresh LoRA over ``scope``."""
    config = PeftLoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                            target_modules=target_regex(model.config, scope, upper_blocks))
    return get_peft_model(model, config)


def merge(model: PeftModel) -> torch.nn.Module:
    """Fold the adapter into the weights (before the next phase's fresh LoRA)."""
    return model.merge_and_unload()


def module_group(param_name: str) -> str:
    """Learning-rate group of a parameter: "encoder" or "decoder"."""
    return "encoder" if ".encoder." in param_name else "decoder"


def param_groups(model: torch.nn.Module, lr: dict[str, float], weight_decay: float) -> list[dict]:
    """AdamW groups per module (encoder / decoder), trainable parameters only."""
    groups: dict[str, list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault(module_group(name), []).append(param)
    return [{"params": params, "lr": lr[name], "weight_decay": weight_decay, "name": name}
            for name, params in sorted(groups.items())]


def lora_state(model: PeftModel) -> dict[str, torch.Tensor]:
    """The trainable adapter tensors, by name (for checkpoints)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
