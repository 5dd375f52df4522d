"""A run on several ranks: joining the process group, wrapping the model, each rank's share of
every batch, and the figures reduced across ranks. With one rank every function here leaves
the run as it was, so the training loop reads the same for one process or many.

torchrun starts the ranks (launchers/torchrun/) and sets RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT; init_process_group reads them. NCCL on CUDA, gloo on CPU.

This module is the one owner of rank sharding. batch_size is the global micro-batch: every rank
draws the same seeded stream of global batches and keeps its own rows of each (rows_of; the way
DistributedSampler has every rank compute the same order and keep its own indices), and the
workload builds only those rows where it can. A run on N ranks therefore sees exactly the
sequences a run on one process with the same batch_size sees, and, since
DistributedDataParallel averages the gradients over the ranks, takes the same steps (up to
float rounding).

How the model is held:
  - sharding "none", optimizer stepped by the loop: DistributedDataParallel. The optimizer steps
    after DDP's all-reduce, so GaLore's projectors come from the same averaged gradient on
    every rank, and ReLoRA's merge and reset, being deterministic, stay identical. With gradient
    accumulation only the step's last micro-batch all-reduces (what DDP's no_sync does for the
    others): the gradients accumulate locally and are averaged once per step.
  - sharding "none", layer-wise updates (steps_in_backward): no DDP wrapper. DDP all-reduces in
    buckets once the whole backward is done, after the per-parameter hooks have already stepped
    on the local gradient; and its buckets hold a copy of every gradient, which is the memory
    layer-wise updates exist to save. Instead each hook averages its one gradient across the
    ranks before stepping (methods/layerwise.py), so ranks stay identical and only one
    gradient is alive at a time. The price is no overlap of communication with the backward.
  - sharding "fsdp2": torch.distributed.fsdp.fully_shard on every decoder (or encoder) block
    and on the root; each rank holds a shard of every weight, gradient and optimizer state.
    Methods opt in (Method.fsdp2; the README's methods table lists them). bitsandbytes' 8-bit
    step takes plain tensors, not DTensors (see _step_on_local_shards). Muon and GaLore gather a
    whole matrix only where they need one (Newton-Schulz, the projector's SVD) and keep their
    state as row shards (methods/row_shards.py).
"""

import os
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.nn.parallel import DistributedDataParallel

from results.schema import Memory
from workloads.base import ALL_ROWS


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run."""

    rank: int
    world_size: int
    device: torch.device
    """The device this rank trains on (on CUDA, the GPU of its local rank)."""


def join(spec, device: torch.device) -> Ranks:
    """This process's Ranks, after joining the process group where the run has several."""
    if spec.world_size == 1:
        return Ranks(0, 1, device)
    launched_with = int(os.environ.get("WORLD_SIZE", "1"))
    if launched_with != spec.world_size:
        raise RuntimeError(f"the spec asks for {spec.world_size} ranks but this process was started as one of "
                           f"{launched_with}: runs with nproc > 1 are launched through torchrun (launchers/torchrun/)")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), device)


def leave(ranks: Ranks):
    if ranks.world_size > 1:
        # Every rank reaches the end before any tears the group down: a rank destroying it while
        # another is still in its last collective can leave that one waiting (seen once in a
        # full test run here: rank 1 exited, rank 0 never did; pytorch/pytorch#75097).
        dist.barrier()
        dist.destroy_process_group()


def wrap(training, spec, ranks: Ranks):
    """The Training with its model held across the ranks as the module docstring says."""
    if ranks.world_size == 1:
        return training
    if spec.sharding == "fsdp2":
        return fully_shard_training(training)
    if training.steps_in_backward:
        for tensor in [*training.model.parameters(), *training.model.buffers()]:
            dist.broadcast(tensor.detach(), src=0)  # start from rank 0's weights, as DDP does
        return training
    # No buffer changes in training (no batch norm), so none is synced before each forward;
    # gradients as views of DDP's buckets save a gradient-sized copy (the buckets themselves,
    # one gradient's size, stay allocated for the whole run: the tracker counts them).
    model = DistributedDataParallel(training.model, device_ids=[ranks.device] if ranks.device.type == "cuda" else None,
                                    forward_sync_buffers=False, gradient_as_bucket_view=True)
    return replace(training, model=model, before_micro_batch=_sync_on_last(model, training.before_micro_batch))


def _sync_on_last(model: DistributedDataParallel, before_micro_batch):
    """The before_micro_batch hook that lets DDP all-reduce only in the step's last micro-batch,
    as no_sync() does for the others (it sets the same flag, read by the next forward), then
    calls the method's own hook."""

    def before(is_last: bool):
        model.require_backward_grad_sync = is_last
        if before_micro_batch:
            before_micro_batch(is_last)

    return before


def fully_shard_training(training, shard=fully_shard):
    """FSDP2 on each transformer block and the root. fully_shard puts new (DTensor) parameters on
    the modules, so the optimizer, built by the method before, is pointed at them, and what state
    it already keeps per parameter (APOLLO's projection seeds) moves with them. `shard` is
    fully_shard, or it with a mesh of its own (a traced estimate's fake ranks)."""
    model = training.model
    before = dict(model.named_parameters())
    # transformers names the blocks that must not be split across devices: the sharding unit.
    block_names = next((m._no_split_modules for m in model.modules() if getattr(m, "_no_split_modules", None)), ())
    for block in [m for m in model.modules() if type(m).__name__ in block_names]:
        shard(block)
    shard(model)
    after = dict(model.named_parameters())
    sharded_of = {id(before[name]): after[name] for name in before}
    for group in training.optimizer.param_groups:
        for p in group["params"]:
            if p in training.optimizer.state:
                training.optimizer.state[sharded_of[id(p)]] = training.optimizer.state.pop(p)
        group["params"] = [sharded_of[id(p)] for p in group["params"]]
    if type(training.optimizer).__module__.startswith("bitsandbytes"):
        _step_on_local_shards(training.optimizer)
    return training


def _step_on_local_shards(optimizer):
    """bitsandbytes' kernels take plain tensors and refuse DTensors, so the optimizer is given
    each parameter's local shard instead: a view, so its in-place update is the DTensor's. Before
    each step every shard gets its gradient's local shard; after it, the DTensor gradients are
    dropped, as the loop's zero_grad(set_to_none=True) drops the shards'. Its 8-bit blocks are
    then cut per shard, not per whole weight."""
    from bitsandbytes.optim import GlobalOptimManager

    pairs = []
    with torch.no_grad():
        for group in optimizer.param_groups:
            shards = [parameter.to_local() for parameter in group["params"]]
            pairs += zip(shards, group["params"])
            group["params"] = shards
    # Whether a tensor gets 8-bit or 32-bit moments follows its size (min_8bit_size): decide by
    # the whole weight's, as without sharding, not by its shard's.
    smallest_8bit = optimizer.args.min_8bit_size
    for shard, parameter in pairs:
        threshold = 0 if parameter.numel() >= smallest_8bit else shard.numel() + 1
        GlobalOptimManager.get_instance().override_config(shard, "min_8bit_size", threshold)

    def hand_over_gradients(optimizer, args, kwargs):
        for shard, parameter in pairs:
            shard.grad = None if parameter.grad is None else parameter.grad.to_local()

    def drop_gradients(optimizer, args, kwargs):
        for shard, parameter in pairs:
            shard.grad = parameter.grad = None

    optimizer.register_step_pre_hook(hand_over_gradients)
    optimizer.register_step_post_hook(drop_gradients)


def reshard(model: torch.nn.Module):
    """Under FSDP2, free the gathered weights a forward without a backward left behind (the
    root's), so that figures read next count this rank's shards; nothing otherwise."""
    if isinstance(model, FSDPModule):
        model.reshard()


def rows_of(ranks: Ranks, batch_size: int) -> slice:
    """The rows of every global batch of batch_size this rank keeps: its own batch_size / world
    size of them (the spec checks that they divide)."""
    if ranks.world_size == 1:
        return ALL_ROWS
    rows = batch_size // ranks.world_size
    return slice(ranks.rank * rows, (ranks.rank + 1) * rows)


def share_of_mean(loss: torch.Tensor, workload, batch, ranks: Ranks | None) -> torch.Tensor:
    """A micro-batch's loss as this rank's share of the global batch's mean. A workload's loss is
    a mean over its rows' weight (workload.loss_weight: predicted tokens, or rows), which padding
    makes differ from rank to rank, while the ranks' gradients are averaged with equal weights:
    scaled by weight x world / global weight, their average is the mean one process takes over
    the whole batch (with equal weights the scale is exactly 1). All on the device, so the step
    waits for no host read. One rank (or None): the loss itself, and nothing computed."""
    if ranks is None or ranks.world_size == 1:
        return loss
    here = workload.loss_weight(batch).to(torch.float64)
    total = here.clone()
    dist.all_reduce(total)
    return loss * (here * ranks.world_size / total).to(loss.dtype)


def reduce_step(step_loss: torch.Tensor, step_tokens: int, ranks: Ranks) -> tuple[torch.Tensor, int]:
    """The step's loss averaged over the ranks and its tokens summed: the global figures."""
    if ranks.world_size == 1:
        return step_loss, step_tokens
    totals = torch.stack([step_loss.detach().double(), torch.tensor(step_tokens, dtype=torch.float64,
                                                                     device=step_loss.device)])
    dist.all_reduce(totals)
    return totals[0] / ranks.world_size, int(totals[1])


def gather_memory(memory: Memory, ranks: Ranks) -> Memory:
    """Every rank's figures in one Memory (Memory.across_ranks says how they combine)."""
    if ranks.world_size == 1:
        return memory
    every_rank = [None] * ranks.world_size
    dist.all_gather_object(every_rank, memory)
    return Memory.across_ranks(every_rank)
