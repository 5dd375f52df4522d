"""One rank of an FSDP2 run, traced: what each of N ranks holds, without N processes.

A fake process group (torch's "fake" backend) lets this one process be rank 0 of N: every
collective returns at once, moving no data, which fake tensors do not have anyway, while
fully_shard cuts every weight, gradient and optimizer state into its 1/N row shard exactly as
on N real ranks, and the methods' own gathers (GaLore's refresh, Muon's Newton-Schulz) make the
whole matrices they make there. Every rank holds the same shapes (up to FSDP2's padding of the
last rank's rows), so rank 0's figures are each rank's.

A DDP rank is not traced this way: it holds what one process with batch_size / N holds, plus
DDP's gradient buckets (one gradient's size), which are C++ allocations fake tensors do not see.
"""

from contextlib import contextmanager
from functools import partial

import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from core.spec import RunSpec
from training import parallel


def refuse_untraceable(spec: RunSpec):
    """One line, before any trace, for several ranks the traced estimate does not model."""
    if spec.world_size > 1 and spec.sharding != "fsdp2":
        raise ValueError(f"--nproc {spec.world_size} with --sharding {spec.sharding}: the traced estimate models "
                         "several ranks with --sharding fsdp2 only; a DDP rank holds what --nproc 1 with "
                         f"--batch {spec.batch_size // spec.world_size} holds, plus DDP's gradient buckets "
                         "(one more gradient's size)")


def rank_note(spec: RunSpec) -> list[str]:
    """What the figures of a traced spec are: one rank's when it has several."""
    if spec.world_size == 1:
        return []
    return [f"one rank of {spec.world_size} under FSDP2 (a fake process group: collectives move no data), "
            f"training {spec.batch_size // spec.world_size} of each batch's {spec.batch_size} sequences"]


@contextmanager
def ranks_of(spec: RunSpec):
    """A function that holds a Training as rank 0 of spec's ranks would (the identity for one
    rank), with the fake process group alive until the block ends. Enter it before the fake
    tensor mode: the device mesh computes its coordinates on real tensors."""
    refuse_untraceable(spec)
    if spec.world_size == 1:
        yield lambda training: training
        return
    if dist.is_initialized():
        raise RuntimeError("a traced estimate of several ranks needs this process outside any process group")
    dist.init_process_group("fake", rank=0, world_size=spec.world_size)
    try:
        mesh = init_device_mesh("cpu", (spec.world_size,))
        yield partial(parallel.fully_shard_training, shard=partial(fully_shard, mesh=mesh))
    finally:
        dist.destroy_process_group()
