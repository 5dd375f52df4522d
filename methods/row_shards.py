"""Whole matrices from FSDP2's row shards, for the optimizers that need one now and then.

Under sharding = "fsdp2" each parameter and its gradient is a DTensor whose local tensor holds
a block of its rows (Shard(0)). Muon's Newton-Schulz and GaLore's SVD need the whole matrix:
they gather it (whole), compute on it, and keep the rows this rank holds (own_rows); everything
else works on the local block (local). A product over the rows (GaLore's Pᵀ G) adds up every
rank's term, each rank keeping a block of its columns (own_columns_of_sum, whole_from_columns).
On a plain tensor, as without FSDP2, each function hands back what it is given, so an optimizer
has one code path for both.
"""

import torch
from torch.distributed.tensor import DTensor, Partial, Shard, distribute_tensor


def is_sharded(tensor: torch.Tensor) -> bool:
    return isinstance(tensor, DTensor)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's block of rows (a view, so in-place updates reach the DTensor)."""
    return tensor.to_local() if is_sharded(tensor) else tensor


def whole(block: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The whole matrix of which `block` is this rank's rows, laid out as `like` (the parameter):
    an all-gather under FSDP2; `block` itself otherwise."""
    if not is_sharded(like):
        return block
    return whole_of(DTensor.from_local(block, like.device_mesh, like.placements, shape=like.shape,
                                       stride=like.stride()))


def own_rows(matrix: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The rows of a whole matrix that this rank holds of `like`, cut as FSDP2 cuts `like`
    (src_data_rank=None: every rank already has the matrix, so nothing is sent)."""
    if not is_sharded(like):
        return matrix
    rows = distribute_tensor(matrix, like.device_mesh, like.placements, src_data_rank=None).to_local()
    return rows.clone()  # a view would keep the whole matrix alive


def sharded_rows(matrix: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A whole matrix every rank has, kept from now on as a DTensor of which each rank holds only
    its block of rows, cut as `like` is (`whole_of` gathers it back); `matrix` itself otherwise."""
    if not is_sharded(like):
        return matrix
    rows = own_rows(matrix, like)
    return DTensor.from_local(rows, like.device_mesh, like.placements, shape=matrix.shape, stride=matrix.stride())


def whole_of(tensor: torch.Tensor) -> torch.Tensor:
    """The whole of a DTensor (an all-gather); a plain tensor as it is."""
    return tensor.full_tensor() if is_sharded(tensor) else tensor


def own_columns_of_sum(partial: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """This rank's block of columns of the sum over the ranks of `partial` (each rank's term
    computed from its rows of `like`): a reduce-scatter under FSDP2; `partial` itself otherwise."""
    if not is_sharded(like):
        return partial
    mesh = like.device_mesh
    return DTensor.from_local(partial, mesh, [Partial()]).redistribute(mesh, [Shard(1)]).to_local()


def whole_from_columns(block: torch.Tensor, columns: int, like: torch.Tensor) -> torch.Tensor:
    """The whole matrix, `columns` wide, of which `block` is this rank's columns as
    own_columns_of_sum cut them: an all-gather under FSDP2; `block` itself otherwise."""
    if not is_sharded(like):
        return block
    return whole_of(DTensor.from_local(block, like.device_mesh, [Shard(1)], shape=(block.shape[0], columns),
                                       stride=(columns, 1)))
