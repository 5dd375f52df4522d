"""GaLore (Zhao et al., ICML 2024): AdamW on gradients projected to a low-rank subspace.

Only the weights of the Linear layers named by target_modules (default: the attention
and MLP Linears of the model's repeated layers) are projected; everything else (embeddings, norms, LM head)
gets plain AdamW in the same optimizer, as in the paper. Under conventions "hf" the optimizer
is built as transformers' Trainer builds galore_adamw (and its 8-bit and layer-wise forms).
"""

from dataclasses import dataclass, replace

import torch

from methods.base import Method, Training, projected_and_plain, projection_weight_decay, warmup_cosine_schedule
from methods.galore_adamw import GaLoreAdamW
from methods.galore_adamw8bit import GaLoreAdamW8bit
from methods.galore_projector import check_projection_options, galore_rank
from methods.layerwise import layerwise_training

HF_WEIGHT_DECAY = {GaLoreAdamW: 0.0, GaLoreAdamW8bit: 1e-2}
"""Under conventions "hf", each optimizer's weight decay on every tensor, norms included: that of
galore-torch's GaLoreAdamW and GaLoreAdamW8bit by default, which transformers' Trainer builds
from the lr alone, whatever its weight_decay says."""


@dataclass(frozen=True)
class GaLoreOptions:
    rank: int | None = None
    """Projection rank r; None takes the model size's galore_rank from workloads/sizes.toml."""
    update_proj_gap: int = 200
    """T: the projector is recomputed from the gradient's SVD every T steps, step 0 included."""
    scale: float = 0.25
    """α: the projected-back update is scaled by it."""
    proj_type: str = "std"
    """std (project the smaller side), reverse_std, left, right, or full (both sides)."""
    target_modules: tuple[str, ...] | None = None
    """Module-name suffixes of the Linear layers to project (conventions "hf": names, substrings
    or regexes, as transformers' optim_target_modules); None takes the attention and MLP Linears
    of the model's repeated layers (methods/blocks.py)."""

    def __post_init__(self):
        check_projection_options(self.rank, self.update_proj_gap, self.proj_type, ("scale", self.scale))


def param_groups(model: torch.nn.Module, spec, options: GaLoreOptions, workload) -> list[dict]:
    """A plain group and a GaLore group (the optimizers' per-group rank, T, α, proj_type)."""
    projected, plain = projected_and_plain(model, options.target_modules, workload, spec.conventions)
    galore_settings = {
        "rank": galore_rank(options, spec),
        "update_proj_gap": options.update_proj_gap,
        "scale": options.scale,
        "proj_type": options.proj_type,
    }
    return [{"params": plain}, {"params": projected, **galore_settings}]


def refresh_steps(options: GaLoreOptions):
    """Whether a 0-based step recomputes the projectors: steps 0, T, 2T, ..."""
    return lambda step: step % options.update_proj_gap == 0


def _one_optimizer(optimizer_class):
    def prepare(model, spec, options, workload) -> Training:
        groups = param_groups(model, spec, options, workload)
        weight_decay = projection_weight_decay(spec, HF_WEIGHT_DECAY[optimizer_class])
        optimizer = optimizer_class(groups, lr=spec.lr, weight_decay=weight_decay)
        return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec),
                        is_refresh_step=refresh_steps(options))

    return prepare


def _layerwise(optimizer_class):
    def prepare(model, spec, options, workload) -> Training:
        optimizer_of = {}
        weight_decay = projection_weight_decay(spec, HF_WEIGHT_DECAY[optimizer_class])
        for group in param_groups(model, spec, options, workload):
            for p in group["params"]:
                optimizer_of[p] = optimizer_class([{**group, "params": [p]}], lr=spec.lr, weight_decay=weight_decay)
        return replace(layerwise_training(model, spec, optimizer_of), is_refresh_step=refresh_steps(options))

    return prepare


def prepare_reference(model, spec, options, workload) -> Training:
    """galore-torch's own GaLoreAdamW, to compare with ours in the same suite."""
    try:
        from galore_torch import GaLoreAdamW as ReferenceGaLoreAdamW
    except ImportError as error:
        raise RuntimeError("method galore_ref needs the galore-torch package: pip install galore-torch==1.0") from error
    groups = param_groups(model, spec, options, workload)
    weight_decay = projection_weight_decay(spec, HF_WEIGHT_DECAY[GaLoreAdamW])
    optimizer = ReferenceGaLoreAdamW(groups, lr=spec.lr, weight_decay=weight_decay, no_deprecation_warning=True)
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec),
                    is_refresh_step=refresh_steps(options))


GALORE = Method("galore", _one_optimizer(GaLoreAdamW), GaLoreOptions, "GaLore AdamW (low-rank projected moments)", svd_rank=True,
                fsdp2=True, rank=galore_rank)
GALORE_8BIT = Method(
    "galore8bit", _one_optimizer(GaLoreAdamW8bit), GaLoreOptions, "GaLore with bitsandbytes 8-bit moments", svd_rank=True,
    fsdp2=True, rank=galore_rank,
)
GALORE_LAYERWISE = Method(
    "galore_layerwise", _layerwise(GaLoreAdamW), GaLoreOptions, "GaLore AdamW, layer-wise updates", svd_rank=True, rank=galore_rank
)
GALORE_8BIT_LAYERWISE = Method(
    "galore8bit_layerwise", _layerwise(GaLoreAdamW8bit), GaLoreOptions, "8-bit GaLore, layer-wise updates", svd_rank=True, rank=galore_rank,
)
GALORE_REFERENCE = Method(
    "galore_ref", prepare_reference, GaLoreOptions, "galore-torch 1.0's GaLoreAdamW (the reference)", svd_rank=True, rank=galore_rank,
)
