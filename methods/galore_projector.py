"""GaLore's gradient projector, kept as plain tensors in the optimizer state.

A weight gradient G (m x n) is projected to a low-rank R by the top-r singular vectors of G:
on the right R = G Qᵀ with Q = Vh[:r] (r x n), on the left R = Pᵀ G with P = U[:, :r]
(m x r), or on both sides. The matrices live in the parameter's optimizer state under
"projector_left" (P) and "projector_right" (Q), so state_dict() holds tensors only.

Under FSDP2 the gradient and the weight are row shards (DTensors, methods/row_shards.py): the
whole gradient is gathered only at a refresh, for its SVD (every rank computes the same one from
the same gathered bits); each rank keeps its rows of P (m x r, sharded as the weight) and its
rows of Q (r x n, a DTensor), which is gathered whole for each use, as FSDP2 gathers weights.
Between refreshes each rank projects its own rows: G_i Qᵀ is its rows of R, and of
Pᵀ G = Σ_i P_iᵀ G_i (a reduce-scatter) it keeps a block of columns, so every low-rank gradient,
and its moments, is sharded. The low-rank update of a left projection is gathered (r x n) before
it goes back into each rank's rows.
"""

import math

import torch

from methods.row_shards import (
    local,
    own_columns_of_sum,
    own_rows,
    sharded_rows,
    whole_from_columns,
    whole_of,
)
from workloads.sizes import size_default

PROJ_TYPES = ("std", "reverse_std", "left", "right", "full")


def check_projection_options(rank: int | None, update_proj_gap: int, proj_type: str, scale: tuple[str, float]):
    """The checks every SVD-projection method's options share (GaLore, Fira): a ValueError naming
    the option and what is accepted. `scale`: the name and value of the update's scale."""
    name, value = scale
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"options.{name} = {value!r} scales every projected update; accepted: a number above 0")
    if proj_type not in PROJ_TYPES:
        raise ValueError(f"options.proj_type {proj_type!r} is not known; accepted: {', '.join(PROJ_TYPES)}")
    if rank is not None and rank < 1:
        raise ValueError(f"options.rank must be a positive integer, got {rank!r}")
    if update_proj_gap < 1:
        raise ValueError(f"options.update_proj_gap must be a positive integer, got {update_proj_gap!r}")


def galore_rank(options, spec) -> int:
    """The projection rank of GaLore's family: the option, or the model size's galore_rank
    (workloads/sizes.toml). Also their Method.rank."""
    return options.rank or size_default(spec.workload, spec.size, "galore_rank")


def projection_sides(shape: torch.Size, proj_type: str) -> tuple[str, ...]:
    """Which sides of an m x n gradient are projected: ("left",), ("right",) or both.

    std projects the smaller dimension (tall m >= n: right), reverse_std the larger one,
    as galore-torch does.
    """
    rows, columns = shape
    if proj_type == "std":
        return ("right",) if rows >= columns else ("left",)
    if proj_type == "reverse_std":
        return ("left",) if rows >= columns else ("right",)
    if proj_type == "full":
        return ("left", "right")
    if proj_type in ("left", "right"):
        return (proj_type,)
    raise ValueError(f"proj_type {proj_type!r} is not known; accepted: {', '.join(PROJ_TYPES)}")


def refresh_projector(state: dict, grad: torch.Tensor, rank: int, proj_type: str):
    """Recompute the projector from the SVD of the gradient (in float32, stored in grad's dtype)."""
    U, _, Vh = torch.linalg.svd(grad.float(), full_matrices=False)
    sides = projection_sides(grad.shape, proj_type)
    # Copies, not slices: a slice would keep the whole SVD factor alive with the state.
    compact = dict(dtype=grad.dtype, copy=True, memory_format=torch.contiguous_format)
    if "left" in sides:
        state["projector_left"] = U[:, :rank].to(**compact)
    if "right" in sides:
        state["projector_right"] = Vh[:rank].to(**compact)


def project(state: dict, grad: torch.Tensor) -> torch.Tensor:
    """The low-rank gradient R."""
    low_rank = grad
    if "projector_left" in state:
        low_rank = state["projector_left"].T @ low_rank
    if "projector_right" in state:
        low_rank = low_rank @ whole_of(state["projector_right"]).T
    return low_rank


def add_projected_back(parameter: torch.Tensor, state: dict, low_rank_update: torch.Tensor, alpha: float):
    """parameter += alpha * back(low_rank_update), with the last product accumulated into the
    parameter (addmm_) so no full-size temporary is allocated. Under FSDP2 into this rank's rows."""
    left, right = state.get("projector_left"), state.get("projector_right")
    if left is not None:
        low_rank_update = whole_from_columns(low_rank_update, low_rank_shape(state, parameter.shape)[1], parameter)
    parameter = local(parameter)
    right = None if right is None else whole_of(right)
    if left is not None and right is not None:
        parameter.addmm_(left @ low_rank_update, right, alpha=alpha)
    elif left is not None:
        parameter.addmm_(left, low_rank_update, alpha=alpha)
    else:
        parameter.addmm_(low_rank_update, right, alpha=alpha)


def low_rank_gradient(state: dict, grad: torch.Tensor, step: int, group: dict) -> torch.Tensor:
    """Project a gradient with the group's GaLore settings, refreshing the projector at steps
    0, T, 2T, ... (step counts the parameter's earlier updates). Under FSDP2 (grad a DTensor)
    as the module docstring says."""
    if step % group["update_proj_gap"] == 0:
        refresh_projector(state, whole_of(grad), group["rank"], group["proj_type"])
        if "projector_left" in state:
            state["projector_left"] = own_rows(state["projector_left"], grad)
        if "projector_right" in state:
            state["projector_right"] = sharded_rows(state["projector_right"], grad)
    low_rank = project(state, local(grad))
    return own_columns_of_sum(low_rank, grad) if "projector_left" in state else low_rank


def low_rank_shape(state: dict, shape: torch.Size) -> tuple[int, int]:
    """The shape of the whole low-rank gradient of a weight of `shape` (under FSDP2 each rank
    holds a block of it: rows for a projection on the right only, columns otherwise)."""
    rows = state["projector_left"].shape[1] if "projector_left" in state else shape[0]
    columns = state["projector_right"].shape[0] if "projector_right" in state else shape[1]
    return rows, columns
