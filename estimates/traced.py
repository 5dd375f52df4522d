"""Traced memory estimate: real training steps of any workload, method and size under
FakeTensorMode, measured by the memory tracker, allocating no real memory.

The CPU build of torch cannot fake a CUDA device, so the steps run on fake CPU tensors and
what CUDA would do differently is applied on top (CUDA_ASSUMPTIONS); bitsandbytes parts
that need real data are replaced by their exact shapes and dtypes (bitsandbytes_shapes).
"""

import itertools
import time
import traceback
import weakref
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import datetime, timezone

import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    FakeTensor,
    FakeTensorMode,
    unset_fake_temporarily,
)
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from core.precision import Precision
from core.spec import RunSpec
from core.statuses import RecordKind, Status
from core.units import GB, GIB
from estimates import EstimateRequest
from estimates.fake_ranks import rank_note, ranks_of
from launchers.packages import recorded_packages
from meters.environment import environment
from meters.tracker import CUDA_ALLOCATION_GRANULARITY_BYTES, MemoryTracker, StepMemory, summarize
from methods import METHODS, REGISTERED, prepare_training
from results.records import append_record
from results.schema import Memory, Record
from training.loop import training_step
from training.setting import run_setting
from workloads import WORKLOADS

CUDA_ASSUMPTIONS = (
    "every storage is rounded up to the CUDA caching allocator's 512-byte blocks",
    "torch Adam/AdamW run fused (one in-place kernel, no temporaries), as our methods build them on CUDA",
    "attention runs torch's flash kernel on CPU, which saves what CUDA's flash kernel saves (output and "
    "fp32 logsumexp); CUDA's flash backward also holds an fp32 dq accumulator (batch x seq x heads x "
    "head_dim) and an fp32 softmax sum (batch x heads x seq) while it runs, added here",
    "no CUDA context, cuBLAS workspace or allocator fragmentation (compare with max_memory_allocated, "
    "not reserved or NVML)",
)


NO_ALLOWANCE = ("the tracker's bytes alone: no allowance for the CUDA context, cuBLAS workspaces or "
                "fragmentation (--fit adds one)")


def describe_precision(policy: Precision) -> str:
    """The policy in words: what it keeps in which dtype, and where autocast's casts live."""
    weights = str(policy.weight_dtype).removeprefix("torch.")
    if policy.autocast_dtype is None:
        return f"precision {policy.name} ({weights} weights, gradients and optimizer state, no autocast)"
    compute = str(policy.autocast_dtype).removeprefix("torch.")
    scaler = ", a GradScaler's scale and growth counter (one-element tensors, under other; not traced)" \
        if policy.grad_scaler else ""
    return (f"precision {policy.name} ({weights} weights, which are the master copy, {weights} gradients and "
            f"optimizer state; {compute} autocast, whose weight copies are made in the forward and kept for the "
            f"backward, under activations{scaler})")


def _leave_memos(tensor: torch.Tensor):
    # A memo is a WeakValueDictionary whose entries' callbacks hold it weakly; peft's tensors
    # can sit in another fake mode's memo than ours. (A function, so that no local variable
    # keeps a weak reference alive after it returns.)
    for reference in weakref.getweakrefs(tensor):
        memo = reference.__callback__.__defaults__[0]()
        memo.pop(reference.key, None)


@contextmanager
def fake_cpu():
    """FakeTensorMode in which modules can still be moved and cast.

    FakeTensorMode keeps a weak memo of the fake tensors it makes, and Module.to() (peft
    calls it on every adapter) must swap fake parameters, which torch refuses for weakly
    referenced tensors: the two tensors being swapped leave their memos first.
    """
    swap_tensors = torch.utils.swap_tensors

    def swap_tensors_out_of_memos(first, second):
        _leave_memos(first)
        _leave_memos(second)
        swap_tensors(first, second)

    torch.utils.swap_tensors = swap_tensors_out_of_memos
    try:
        with FakeTensorMode() as mode:
            yield mode
    finally:
        torch.utils.swap_tensors = swap_tensors


@contextmanager
def bitsandbytes_shapes(mode: FakeTensorMode, notes: list[str]):
    """bitsandbytes builds its quantization maps with a data-dependent call, and its update
    kernels need data. The maps are built for real and handed over as fake tensors of the
    same shape and dtype; the updates are skipped: they change state in place and the CUDA
    kernels allocate nothing, so memory is unchanged. Its 4-bit quantization and
    dequantization have fake kernels (exact shapes), but a 4-bit weight (Params4bit) cannot
    wrap a fake tensor: a fake parameter of the packed shape stands in, its quantization state
    (absmax, codes, the nested quantization's) attached as bitsandbytes attaches it."""
    import bitsandbytes  # only for the methods that use it (importing it takes seconds)

    originals = {
        name: getattr(bitsandbytes.functional, name)
        for name in ("create_dynamic_map", "optimizer_update_8bit_blockwise", "optimizer_update_32bit")
    }

    def real_quantization_map(*args, **kwargs):
        note = "bitsandbytes quantization maps built on real tensors, then faked (same shape and dtype)"
        if note not in notes:
            notes.append(note)
        with unset_fake_temporarily():
            real_map = originals["create_dynamic_map"](*args, **kwargs)
        return mode.from_tensor(real_map)

    def skipped_update(*args, **kwargs):
        note = "bitsandbytes update kernels skipped under fake tensors (in place; state shapes and dtypes exact)"
        if note not in notes:
            notes.append(note)

    params4bit_new = vars(bitsandbytes.nn.Params4bit)["__new__"]  # as the class holds it (a staticmethod)

    def fake_params4bit(cls, data=None, requires_grad=False, quant_state=None, blocksize=None,
                        compress_statistics=True, quant_type="fp4", quant_storage=torch.uint8, module=None,
                        bnb_quantized=False):
        note = ("bitsandbytes 4-bit weights (Params4bit) stood in for by frozen fake parameters of the packed "
                "shape and dtype, their quantization state attached")
        if note not in notes:
            notes.append(note)
        # A fake tensor cannot become a Params4bit (a Tensor subclass of its own), but it can
        # become a parameter and carry the attributes Linear4bit's forward reads.
        stand_in = torch.nn.Parameter(data, requires_grad=requires_grad)
        stand_in.quant_state, stand_in.blocksize, stand_in.quant_type = quant_state, blocksize or 64, quant_type
        stand_in.compress_statistics, stand_in.quant_storage = compress_statistics, quant_storage
        stand_in.bnb_quantized, stand_in.module = bnb_quantized, module
        return stand_in

    def params4bit(cls, data=None, *args, **kwargs):
        if isinstance(data, FakeTensor):
            return fake_params4bit(cls, data, *args, **kwargs)
        return params4bit_new.__func__(cls, data, *args, **kwargs)

    # bitsandbytes caches its 8-bit map (the double quantization's) across calls: the traced
    # steps get a cache of their own, so that no fake map outlives them and no real one enters.
    cached_maps = dict(bitsandbytes.functional.name2qmap)
    bitsandbytes.functional.name2qmap.clear()
    bitsandbytes.functional.create_dynamic_map = real_quantization_map
    bitsandbytes.functional.optimizer_update_8bit_blockwise = skipped_update
    bitsandbytes.functional.optimizer_update_32bit = skipped_update
    bitsandbytes.nn.Params4bit.__new__ = params4bit
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(bitsandbytes.functional, name, function)
        bitsandbytes.nn.Params4bit.__new__ = params4bit_new
        bitsandbytes.functional.name2qmap.clear()
        bitsandbytes.functional.name2qmap.update(cached_maps)


def _fused_adam_as_on_cuda(optimizer, args, kwargs):
    if type(optimizer) in (torch.optim.Adam, torch.optim.AdamW):
        for group in optimizer.param_groups:
            group["foreach"], group["fused"] = False, True


class FlashAttentionWorkspace(TorchDispatchMode):
    """Holds CUDA flash-attention's backward workspace while the CPU kernel's backward runs."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is not torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward.default:
            return func(*args, **(kwargs or {}))
        query = args[1]  # (batch, heads, seq, head_dim)
        batch, heads, seq, head_dim = query.shape
        dq_accumulator = torch.empty(batch, seq, heads, head_dim, dtype=torch.float32)
        softmax_sum = torch.empty(batch, heads, seq, dtype=torch.float32)
        outputs = func(*args, **(kwargs or {}))
        del dq_accumulator, softmax_sum
        return outputs


class DataDependentScalars(TorchDispatchMode):
    """Reads a scalar that fake tensors cannot give (one computed from tensor data) as 1 (True
    for a comparison); constants, such as optimizer step counts, keep their value. The scalars
    so read (APOLLO's and Fira's norm-growth limiter, torchao's quantization) steer values, not
    the shapes that memory depends on."""

    NOTE = "scalars read from tensor data (norm-growth limiters, quantization) taken as 1: they steer values, not shapes"

    def __init__(self, notes: list[str]):
        super().__init__()
        self.notes = notes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is not torch.ops.aten._local_scalar_dense.default:
            return func(*args, **(kwargs or {}))
        try:
            return func(*args, **(kwargs or {}))
        except DataDependentOutputException:
            pass
        if self.NOTE not in self.notes:
            self.notes.append(self.NOTE)
        dtype = args[0].dtype
        return True if dtype is torch.bool else 1.0 if dtype.is_floating_point else 1


class _TokensByShape:
    """The workload, counting tokens from the batch shape: fake tensors hold no values."""

    def __init__(self, workload):
        self._workload = workload

    def __getattr__(self, name):
        return getattr(self._workload, name)

    def count_tokens(self, batch) -> int:
        return batch["input_ids"].numel()


def _synthetic_batches(spec: RunSpec):
    # This rank's rows of each global batch. No attention mask: real batches without padding
    # have an all-ones mask, which transformers drops for the causal kernel, but it cannot see
    # that a fake mask is all ones and would build a (batch, 1, seq, seq) mask instead.
    token_ids = torch.ones(spec.batch_size // spec.world_size, spec.seq_len, dtype=torch.long)
    return itertools.repeat({"input_ids": token_ids, "labels": token_ids})


class TracedTraining:
    """One training of a spec on fake tensors whose steps may each run at another batch size,
    so that a batch search builds the model and the optimizer state once. Use inside
    `with traced_training(spec) as training:`."""

    def __init__(self, spec: RunSpec, workload, training, tracker: MemoryTracker, as_cuda: bool, notes: list[str]):
        self.spec, self.notes = spec, notes
        self.tracker = tracker
        self._workload, self._training, self._as_cuda = workload, training, as_cuda
        # One batch exists before each step, as a loaded batch would (and as the traced
        # estimates of the CI baselines were taken); it is remade when the batch size changes.
        self._batch_size, self._batches = spec.batch_size, _synthetic_batches(spec)

    @property
    def steps(self) -> list[StepMemory]:
        """Tracker figures of every step run so far."""
        return self.tracker.steps

    def step(self, batch_size: int | None = None) -> StepMemory:
        """Run the next training step at `batch_size` sequences (default the spec's)."""
        spec = self.spec if batch_size is None else replace(self.spec, batch_size=batch_size)
        step = len(self.tracker.steps)
        if spec.batch_size != self._batch_size:
            self._batch_size, self._batches = spec.batch_size, _synthetic_batches(spec)
        with self.tracker.step(), (FlashAttentionWorkspace() if self._as_cuda else ExitStack()):
            training_step(spec, _TokensByShape(self._workload), self._training, self._batches, torch.device("cpu"),
                          step)
        return self.tracker.steps[-1]


@contextmanager
def traced_training(spec: RunSpec, as_cuda: bool = True, workload=None, tracker_type: type = MemoryTracker):
    """The spec's model and method built on fake tensors, ready to step (TracedTraining), as one
    rank holds them where the spec has several (estimates/fake_ranks.py); its notes list the
    CUDA assumptions and substitutions applied. `workload` (default the spec's) and
    `tracker_type` let a by-structure probe build fewer blocks and watch each one
    (estimates/by_depth.py)."""
    notes = list(CUDA_ASSUMPTIONS) if as_cuda else []
    notes += rank_note(spec)
    workload = workload or WORKLOADS[spec.workload]
    with ExitStack() as stack:
        held_across_ranks = stack.enter_context(ranks_of(spec))
        mode = stack.enter_context(fake_cpu())
        if "bitsandbytes" in REGISTERED[spec.method].packages:
            stack.enter_context(bitsandbytes_shapes(mode, notes))
        stack.enter_context(DataDependentScalars(notes))
        if as_cuda:
            stack.callback(register_optimizer_step_pre_hook(_fused_adam_as_on_cuda).remove)
        torch.manual_seed(spec.seed)
        model = workload.build_model(spec).to(dtype=spec.policy.weight_dtype)
        training = held_across_ranks(prepare_training(model, spec, workload))
        notes.extend(METHODS[spec.method].notes_for("traced" if as_cuda else "cpu"))
        training.model.train()
        granularity_bytes = CUDA_ALLOCATION_GRANULARITY_BYTES if as_cuda else 1
        tracker = tracker_type(training.model, training.optimizer, granularity_bytes, training.is_refresh_step)
        yield TracedTraining(spec, workload, training, tracker, as_cuda, notes)


def traced_steps(spec: RunSpec, steps: int = 2, as_cuda: bool = True) -> tuple[list[StepMemory], list[str]]:
    """Tracker figures of the first `steps` training steps of `spec` on fake tensors, and the
    assumptions and substitutions applied. Two steps by default: the second runs with the
    optimizer state the first one created, the steady state."""
    with traced_training(spec, as_cuda) as training:
        for _ in range(steps):
            training.step()
    return training.steps, training.notes


def traced_record(spec: RunSpec, label: str, suite: str, steps_of=traced_steps) -> Record:
    """The traced estimate of `spec` (its first spec.steps steps, traced by steps_of, traced_steps'
    face) as a record of kind traced_estimate; a spec that cannot be traced gives a record with
    status error and the message, so a grid of estimates goes on."""
    started = time.time()
    common = dict(run_id=spec.run_id, suite=suite, label=label, spec=spec, kind=RecordKind.TRACED_ESTIMATE,
                  setting=run_setting(spec),
                  started_at=datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
                  environment=environment(torch.device("cpu"), recorded_packages()))
    try:
        traced, notes = steps_of(spec, spec.steps)
    except Exception as error:  # noqa: BLE001 - every failure must become a record
        return Record(**common, status=Status.ERROR, error=f"{type(error).__name__}: {error}",
                      traceback=traceback.format_exc(limit=-8), wall_s=time.time() - started)
    return Record(**common, status=Status.OK, memory=Memory.of(summarize(traced)), notes=notes,
                  wall_s=time.time() - started)


def estimate_each(specs: list[RunSpec], request: EstimateRequest, steps_of=traced_steps) -> int:
    """`harness.py estimate`: each spec traced (by steps_of) and printed (and recorded); 1 when one failed."""
    failed = 0
    for spec in specs:
        record = traced_record(spec, label=spec.method, suite=request.suite, steps_of=steps_of)
        print(format_traced(record))
        failed += record.status != Status.OK
        if request.records:
            append_record(request.records, record)
    if request.records:
        print(f"{len(specs)} estimate records appended to {request.records}")
    return 1 if failed else 0


def _refresh_line(memory: Memory) -> str:
    steady = memory.tracker_steady_peak_bytes
    steady_text = "no steady step traced" if steady is None else f"steady-step peak {steady / GIB:.2f} GiB"
    return (f"refresh-step peak (projectors recomputed by SVD) {memory.tracker_refresh_peak_bytes / GIB:.2f} GiB, "
            f"{steady_text}")


def _ranks_text(spec: RunSpec) -> str:
    if spec.world_size == 1:
        return ""
    per_rank = spec.batch_size // spec.world_size
    return (f", FSDP2 on {spec.world_size} ranks ({per_rank} sequence{'s' if per_rank > 1 else ''} each; figures per "
            "rank)")


def format_traced(record: Record) -> str:
    """A traced estimate's peak with its breakdown, and the step end's, in GiB and GB."""
    spec, memory = record.spec, record.memory
    options = f" {spec.method_options}" if spec.method_options else ""
    lines = [
        f"Traced estimate (fake CPU tensors, no memory allocated): {spec.workload}-{spec.size}, "
        f"method {spec.method}{options}, batch {spec.batch_size} x seq {spec.seq_len} x accumulation "
        f"{spec.grad_accum}{_ranks_text(spec)}",
        f"decided by: {describe_precision(spec.policy)}; activation checkpointing "
        f"{'on' if spec.activation_checkpointing else 'off'}; {NO_ALLOWANCE}",
    ]
    if record.status != Status.OK:
        return "\n".join(lines + [f"could not be traced: {record.error}"])
    peak = memory.tracker_peak_bytes
    lines += [
        f"peak: {peak / GIB:.2f} GiB ({peak / GB:.2f} GB) in step {memory.tracker_peak_step} of {spec.steps} traced "
        "(step 0 creates the optimizer state, step 1 runs with it)",
    ]
    if memory.tracker_refresh_peak_bytes is not None:
        lines.append(_refresh_line(memory))
    lines.append(f"{'':<18}{'at peak GiB':>12}{'step end GiB':>14}")
    for category, at_peak in memory.tracker_at_peak_bytes.items():
        lines.append(f"{category:<18}{at_peak / GIB:>12.3f}{memory.tracker_at_step_end_bytes[category] / GIB:>14.3f}")
    lines.append(f"{'total':<18}{peak / GIB:>12.3f}{sum(memory.tracker_at_step_end_bytes.values()) / GIB:>14.3f}")
    lines += ["assumptions and substitutions:"] + [f"  - {note}" for note in record.notes]
    lines.append(f"traced in {record.wall_s:.1f} s wall")
    return "\n".join(lines)
