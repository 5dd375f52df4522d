"""LoRA (peft) on the attention and MLP Linear layers.

As in the GaLore paper's comparison (which follows ReLoRA's code), embeddings, norms and the
LM head stay trainable by default (`train_non_lora`); the base weights of the adapted Linear
layers are frozen.
"""

import math
import warnings
from dataclasses import dataclass

import peft
import torch

# peft 0.21 asks transformers 5.23 a question transformers renamed; the FutureWarning it
# prints on every LoRA model is about their code, not the user's.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

from methods.base import Method, Training, adamw, options_rank, warmup_cosine_schedule, weight_decay_groups
from methods.blocks import block_linear_names


@dataclass(frozen=True)
class LoraOptions:
    rank: int = 8
    """LoRA rank r."""
    alpha: float = 32.0
    """LoRA scale numerator: the update is B A * alpha / rank."""
    dropout: float = 0.05
    """Dropout on the LoRA branch input."""
    train_non_lora: bool = True
    """Keep embeddings, norms and head trainable (the paper's comparison); False freezes them."""
    target_modules: tuple[str, ...] | None = None
    """Module-name suffixes to adapt; None takes the attention and MLP Linears of the model's
    repeated layers (methods/blocks.py), whatever the architecture names them."""

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"options.rank must be a positive integer, got {self.rank!r}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"options.alpha = {self.alpha!r} scales every update; accepted: a number above 0")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"options.dropout = {self.dropout!r}; accepted: a probability in [0, 1)")


def wrap_with_lora(model: torch.nn.Module, options: LoraOptions, workload, **variant) -> torch.nn.Module:
    """Return the peft model with the trainable set the options ask for; `variant` goes to
    peft's LoraConfig as it is (DoRA's use_dora, PiSSA's init_lora_weights)."""
    targets = list(options.target_modules or block_linear_names(model))
    config = peft.LoraConfig(
        r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout, target_modules=targets, **variant
    )
    # peft would keep the adapters in float32 under a bf16 model (autocast_adapter_dtype), which
    # saves a float32 copy of every adapted input for backward; the paper's runs are BF16 throughout.
    # A model on the meta device (preflight's check of a setting) gets its adapters there too,
    # uninitialised: peft would otherwise allocate and initialise them for real, seconds for the
    # paper's 1B at rank 512.
    on_meta = next(model.parameters()).is_meta
    lora_model = peft.get_peft_model(model, config, autocast_adapter_dtype=False, low_cpu_mem_usage=on_meta)
    for name, parameter in lora_model.named_parameters():
        if "lora_" in name:
            parameter.requires_grad_(True)
        elif ".base_layer." in name:
            parameter.requires_grad_(False)
        elif any(f".{head}." in name for head in workload.head_modules):
            # A fine-tuning task's new head starts random: it is always trained.
            parameter.requires_grad_(True)
        else:
            parameter.requires_grad_(options.train_non_lora)
    return lora_model


def train_adapted(adapted: torch.nn.Module, spec) -> Training:
    """AdamW over the adapted model's trainable parameters, on the paper's schedule (LoRA and its variants)."""
    trainable = [p for p in adapted.parameters() if p.requires_grad]
    optimizer = adamw(weight_decay_groups(adapted, trainable, spec), spec)
    return Training(model=adapted, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


def prepare(model, spec, options, workload):
    return train_adapted(wrap_with_lora(model, options, workload), spec)


METHOD = Method("lora", prepare, LoraOptions, "LoRA via peft on attention/MLP Linears", fsdp2=True,
                rank=options_rank)
