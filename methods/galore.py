"""GaLore (Zhao et al., ICML 2024): AdamW on gradients projected to a low-rank subspace.

Only the weights of the Linear layers named by target_modules (default: the workload's
attention and MLP layers) are projected; everything else (embeddings, norms, LM head)
gets plain AdamW in the same optimizer, as in the paper.
"""

from dataclasses import dataclass

import torch

from methods.base import Method, Training, warmup_cosine_schedule
from methods.galore_adamw import GaLoreAdamW
from methods.galore_adamw8bit import GaLoreAdamW8bit
from methods.galore_projector import PROJ_TYPES
from methods.layerwise import layerwise_training
from suites.models import size_default
from workloads import WORKLOADS


@dataclass(frozen=True)
class GaLoreOptions:
    rank: int | None = None
    """Projection rank r; None takes the model size's galore_rank from suites/models.toml."""
    update_proj_gap: int = 200
    """T: the projector is recomputed from the gradient's SVD every T steps, step 0 included."""
    scale: float = 0.25
    """α: the projected-back update is scaled by it."""
    proj_type: str = "std"
    """std (project the smaller side), reverse_std, left, right, or full (both sides)."""
    target_modules: tuple[str, ...] | None = None
    """Module-name suffixes of the Linear layers to project; None takes the workload's."""

    def __post_init__(self):
        if self.proj_type not in PROJ_TYPES:
            raise ValueError(f"method option proj_type {self.proj_type!r} is not known; accepted: {', '.join(PROJ_TYPES)}")
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"method option rank must be a positive integer, got {self.rank!r}")
        if self.update_proj_gap < 1:
            raise ValueError(f"method option update_proj_gap must be a positive integer, got {self.update_proj_gap!r}")


def projected_weights(model: torch.nn.Module, targets) -> list[torch.nn.Parameter]:
    """The weights of Linear layers whose module name is, or ends with ".", one of targets."""
    return [
        module.weight
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and module.weight.requires_grad
        and any(name == target or name.endswith("." + target) for target in targets)
    ]


def param_groups(model: torch.nn.Module, spec) -> list[dict]:
    """A plain group and a GaLore group (the optimizers' per-group rank, T, α, proj_type)."""
    options = GALORE.parse_options(spec.method_options)
    targets = options.target_modules or WORKLOADS[spec.workload].target_modules
    projected = projected_weights(model, targets)
    if not projected:
        raise ValueError(f"method option target_modules {list(targets)} matches no Linear layer of the model")
    projected_ids = {id(p) for p in projected}
    plain = [p for p in model.parameters() if p.requires_grad and id(p) not in projected_ids]
    rank = options.rank or size_default(spec.workload, spec.size, "galore_rank")
    galore_settings = {
        "rank": rank,
        "update_proj_gap": options.update_proj_gap,
        "scale": options.scale,
        "proj_type": options.proj_type,
    }
    return [{"params": plain}, {"params": projected, **galore_settings}]


def _one_optimizer(optimizer_class):
    def prepare(model, spec) -> Training:
        optimizer = optimizer_class(param_groups(model, spec), lr=spec.lr, weight_decay=spec.weight_decay)
        return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))

    return prepare


def _layerwise(optimizer_class):
    def prepare(model, spec) -> Training:
        optimizer_of = {}
        for group in param_groups(model, spec):
            for p in group["params"]:
                optimizer_of[p] = optimizer_class(
                    [{**group, "params": [p]}], lr=spec.lr, weight_decay=spec.weight_decay
                )
        return layerwise_training(model, spec, optimizer_of)

    return prepare


def prepare_reference(model, spec) -> Training:
    """galore-torch's own GaLoreAdamW, to compare with ours in the same suite."""
    try:
        from galore_torch import GaLoreAdamW as ReferenceGaLoreAdamW
    except ImportError as error:
        raise RuntimeError("method galore_ref needs the galore-torch package: pip install galore-torch==1.0") from error
    optimizer = ReferenceGaLoreAdamW(
        param_groups(model, spec), lr=spec.lr, weight_decay=spec.weight_decay, no_deprecation_warning=True
    )
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


GALORE = Method(_one_optimizer(GaLoreAdamW), GaLoreOptions, "GaLore AdamW (low-rank projected moments)")
GALORE_8BIT = Method(_one_optimizer(GaLoreAdamW8bit), GaLoreOptions, "GaLore with bitsandbytes 8-bit moments")
GALORE_LAYERWISE = Method(_layerwise(GaLoreAdamW), GaLoreOptions, "GaLore AdamW, layer-wise updates")
GALORE_8BIT_LAYERWISE = Method(_layerwise(GaLoreAdamW8bit), GaLoreOptions, "8-bit GaLore, layer-wise updates")
GALORE_REFERENCE = Method(prepare_reference, GaLoreOptions, "galore-torch 1.0's GaLoreAdamW (the reference)")
