"""The GaLore paper's Low-Rank baseline: each attention/MLP weight is a product B A, trained from scratch.

Each targeted Linear (out x in) is replaced by Linear(in -> rank) followed by
Linear(rank -> out), so it holds rank * (in + out) weights instead of in * out and the
weight can never leave rank r. Both factors are drawn Gaussian with the std that makes the
entries of B A as large as those of the weight they replace (std(W), the workload's own
init): torch's default Kaiming init of both factors makes every block's output several
times the embeddings' scale, and on the tiny LLaMA that slowed early training markedly.
Unlike LoRA there is no zero factor, so both get gradients from the first step.
Embeddings, norms and the head stay as they are; everything trains with full.py's AdamW.
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch

from methods import full
from methods.base import Method, NoOptions, linear_layers, options_rank
from methods.blocks import block_linear_names


@dataclass(frozen=True)
class LowRankOptions:
    rank: int = 8
    """Inner dimension r of each factorised weight W = B A."""
    target_modules: tuple[str, ...] | None = None
    """Module-name suffixes to factorise; None takes the attention and MLP Linears of the model's
    repeated layers (methods/blocks.py)."""

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"options.rank must be a positive integer, got {self.rank!r}")


@torch.no_grad()
def factorised(linear: torch.nn.Linear, rank: int) -> torch.nn.Sequential:
    """A freshly initialised x -> B (A x) with the Linear's shapes and bias; A is rank x in."""
    like = dict(device=linear.weight.device, dtype=linear.weight.dtype)
    product = torch.nn.Sequential(
        OrderedDict(
            A=torch.nn.Linear(linear.in_features, rank, bias=False, **like),
            B=torch.nn.Linear(rank, linear.out_features, bias=linear.bias is not None, **like),
        )
    )
    # An entry of B A sums `rank` products of two factor entries: var = rank * factor_std**4.
    # Tensor ops throughout, so this also runs on fake tensors.
    factor_std = (linear.weight.std() / rank**0.5).sqrt()
    for factor in (product.A.weight, product.B.weight):
        factor.normal_().mul_(factor_std)
    return product


def factorise_linears(model: torch.nn.Module, suffixes: tuple[str, ...], rank: int) -> int:
    """Replace each Linear whose name ends in one of `suffixes` in place; returns how many."""
    targets = list(linear_layers(model, suffixes))
    for name in targets:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child_name, factorised(getattr(parent, child_name), rank))
    return len(targets)


def prepare(model, spec, options, workload):
    suffixes = tuple(options.target_modules or block_linear_names(model))
    if factorise_linears(model, suffixes, options.rank) == 0:
        raise ValueError(f"options.target_modules {suffixes} matched no Linear layer of the model")
    return full.prepare(model, spec, NoOptions(), workload)


METHOD = Method(
    "low_rank",
    prepare,
    LowRankOptions,
    "Low-Rank baseline: attention/MLP weights factorised W = B A, trained from scratch with AdamW",
    rank=options_rank,
    fsdp2=True,
)
