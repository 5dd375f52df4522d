"""APOLLO and APOLLO-Mini (Zhu et al., MLSys 2025), with apollo-torch's own APOLLOAdamW.

AdamW moments are kept for a random projection of each target gradient (rank r); they only
yield a scaling factor per channel (APOLLO) or per tensor (Mini), which scales the raw
full-rank gradient. Other parameters get plain AdamW in the same optimizer. The package keeps
each projection matrix in the state (regenerated every T steps from a per-parameter seed)
and a norm-growth-limiter scalar per projected weight: both are counted as optimizer state.
Under conventions "hf" the optimizer is built as transformers' Trainer builds apollo_adamw.
"""

import math
from dataclasses import dataclass

from apollo_torch import APOLLOAdamW
from torch.distributed.tensor.experimental import implicit_replication

from methods.base import (
    Method,
    Training,
    options_rank,
    projected_and_plain,
    projection_weight_decay,
    warmup_cosine_schedule,
)
from methods.layerwise import layerwise_training

PROJECTIONS = ("random", "svd")
SCALE_TYPES = ("channel", "tensor")
HF_WEIGHT_DECAY = 0.0
"""Under conventions "hf", the weight decay of every tensor: APOLLOAdamW's default, as
transformers' Trainer builds apollo_adamw from the lr alone."""
HF_PROJECTED_EPS = 1e-8
"""Under conventions "hf", the projected group's eps: transformers' apollo_adamw gives that group
the Trainer's adam_epsilon (default 1e-8); the plain group keeps APOLLOAdamW's 1e-6."""


@dataclass(frozen=True)
class ApolloOptions:
    """Named and defaulted as Hugging Face's Trainer's `apollo_adamw` optim_args."""

    rank: int = 128
    """r: rank of the projected gradient the moments are kept for."""
    proj: str = "random"
    """random (APOLLO's seeded Gaussian projection) or svd (GaLore's)."""
    scale_type: str = "channel"
    """channel: one gradient scaling factor per row or column; tensor: one per weight (Mini)."""
    scale: float = 1.0
    """The update is multiplied by sqrt(scale)."""
    update_proj_gap: int = 200
    """T: the projection is regenerated every T steps, step 0 included."""
    proj_type: str = "std"
    """std projects the smaller side; reverse_std, left, right as in GaLore."""
    target_modules: tuple[str, ...] | None = None
    """Module-name suffixes of the Linear layers to project (conventions "hf": names, substrings
    or regexes, as transformers' optim_target_modules); None takes the attention and MLP Linears
    of the model's repeated layers (methods/blocks.py)."""

    def __post_init__(self):
        if self.proj not in PROJECTIONS:
            raise ValueError(f"options.proj {self.proj!r} is not known; accepted: {', '.join(PROJECTIONS)}")
        if self.scale_type not in SCALE_TYPES:
            raise ValueError(f"options.scale_type {self.scale_type!r} is not known; accepted: {', '.join(SCALE_TYPES)}")
        if self.rank < 1:
            raise ValueError(f"options.rank must be a positive integer, got {self.rank!r}")
        if self.update_proj_gap < 1:
            raise ValueError(f"options.update_proj_gap must be a positive integer, got {self.update_proj_gap!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"options.scale = {self.scale!r} scales every update; accepted: a number above 0")


@dataclass(frozen=True)
class ApolloMiniOptions(ApolloOptions):
    """APOLLO-Mini: rank 1 and one scaling factor per tensor; the larger scale (the APOLLO
    README's Mini setting) makes up for a rank-1 estimate's small norm ratio."""

    rank: int = 1
    """r: a rank-1 projection."""
    scale_type: str = "tensor"
    """One gradient scaling factor per weight."""
    scale: float = 128.0
    """The update is multiplied by sqrt(scale)."""


def param_groups(model, spec, options: ApolloOptions, workload) -> list[dict]:
    projected, plain = projected_and_plain(model, options.target_modules, workload, spec.conventions)
    settings = {
        "rank": options.rank,
        "proj": options.proj,
        "scale_type": options.scale_type,
        "scale": options.scale,
        "update_proj_gap": options.update_proj_gap,
        "proj_type": options.proj_type,
    }
    if spec.conventions == "hf":
        settings["eps"] = HF_PROJECTED_EPS
    return [{"params": plain}, {"params": projected, **settings}]


class ShardableAPOLLOAdamW(APOLLOAdamW):
    """APOLLOAdamW that also steps FSDP2's row-sharded (DTensor) weights. Its step mixes them with
    plain tensors (the seeded projection it draws, of the whole weight's shape since DTensors
    report that shape), which DTensor refuses unless told to treat plain tensors as replicated,
    the same on every rank, as these are (same seed). DTensor then works out each product's
    placement: G Qᵀ stays row-sharded; Pᵀ G and the norms of the scaling factors are reduced over
    the ranks. No SVD, so no step gathers the whole gradient on purpose."""

    def step(self, closure=None):
        with implicit_replication():
            return super().step(closure)


def prepare(model, spec, options: ApolloOptions, workload) -> Training:
    weight_decay = projection_weight_decay(spec, HF_WEIGHT_DECAY)
    optimizer = ShardableAPOLLOAdamW(param_groups(model, spec, options, workload), lr=spec.lr, weight_decay=weight_decay)
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


def prepare_layerwise(model, spec, options: ApolloOptions, workload) -> Training:
    optimizer_of = {}
    parameters = [(group, p) for group in param_groups(model, spec, options, workload) for p in group["params"]]
    weight_decay = projection_weight_decay(spec, HF_WEIGHT_DECAY)
    for seed, (group, p) in enumerate(parameters, start=1):
        optimizer = APOLLOAdamW([{**group, "params": [p]}], lr=spec.lr, weight_decay=weight_decay)
        # Alone in its optimizer every weight would get seed 1, the same projection for all;
        # give each the seed it has in the one-optimizer form.
        optimizer.state[p]["seed"] = seed
        optimizer_of[p] = optimizer
    return layerwise_training(model, spec, optimizer_of)


APOLLO = Method("apollo", prepare, ApolloOptions, "APOLLO (apollo-torch): channel-wise scaled updates from random-projected moments",
                fsdp2=True, rank=options_rank)
APOLLO_MINI = Method("apollo_mini", prepare, ApolloMiniOptions, "APOLLO-Mini (apollo-torch): rank 1, tensor-wise scaling",
                     fsdp2=True, rank=options_rank)
APOLLO_LAYERWISE = Method(
    "apollo_layerwise", prepare_layerwise, ApolloOptions, "APOLLO (apollo-torch), layer-wise updates",
    rank=options_rank,
)
