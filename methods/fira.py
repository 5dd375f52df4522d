"""Fira (Chen et al., 2024), with the fira package's own FiraAdamW.

GaLore's projected AdamW plus the residual the projection drops: the full-rank gradient minus
its projection, scaled per channel by the ratio of the low-rank update's norm to the low-rank
gradient's, with a norm-growth limiter. Only the target Linear weights are projected; the rest
get plain AdamW in the same optimizer. With float32 weights the package keeps its projector as
a slice of the gradient's SVD factor, which keeps the whole min(m, n)² factor alive (counted as
state); with BF16 weights its cast back makes a compact r x min(m, n) copy.
"""

from dataclasses import dataclass

from fira import FiraAdamW

from methods.base import Method, Training, projected_and_plain, warmup_cosine_schedule
from methods.galore_projector import check_projection_options, galore_rank


@dataclass(frozen=True)
class FiraOptions:
    """Named as fira's divide_params; rank defaults as GaLore's for a like-for-like comparison."""

    rank: int | None = None
    """Projection rank r; None takes the model size's galore_rank from workloads/sizes.toml."""
    update_proj_gap: int = 200
    """T: the projector is recomputed from the gradient's SVD every T steps, step 0 included."""
    alpha: float = 1.0
    """Scale of the projected-back update (GaLore's α); the package's default."""
    proj_type: str = "std"
    """std (project the smaller side), reverse_std, left, right, or full (both sides)."""
    target_modules: tuple[str, ...] | None = None
    """Module-name suffixes of the Linear layers to project (conventions "hf": names, substrings
    or regexes, as transformers' optim_target_modules); None takes the attention and MLP Linears
    of the model's repeated layers (methods/blocks.py)."""

    def __post_init__(self):
        check_projection_options(self.rank, self.update_proj_gap, self.proj_type, ("alpha", self.alpha))


def prepare(model, spec, options: FiraOptions, workload) -> Training:
    projected, plain = projected_and_plain(model, options.target_modules, workload, spec.conventions)
    settings = {
        "rank": galore_rank(options, spec),
        "update_proj_gap": options.update_proj_gap,
        "alpha": options.alpha,
        "proj_type": options.proj_type,
    }
    groups = [{"params": plain}, {"params": projected, **settings}]
    optimizer = FiraAdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay, no_deprecation_warning=True)
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


METHOD = Method(
    "fira", prepare, FiraOptions, "Fira (fira): GaLore plus the norm-scaled full-rank residual", svd_rank=True, rank=galore_rank,
)
