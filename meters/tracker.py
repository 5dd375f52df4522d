"""Exact live-tensor memory of training steps, broken down by what each tensor is.

A TorchDispatchMode sees every tensor an op creates, in the forward, the backward, the
optimizer step and inside gradient hooks (layer-wise updates), on any device, fake tensors
included. Memory is counted per storage, not per tensor, so views and shared tensors
(bitsandbytes' quantization map sits in every parameter's state) count once; a weak
reference to each storage says when it is freed. The counts are plain byte sums, so the
same run gives the same bytes every time.

We do not build on torch.distributed._tools.mem_tracker.MemTracker: on torch 2.13 it
registers gradient hooks on every parameter, which raises on the frozen parameters of a
peft model.

Categories are decided when a snapshot is read, from what each storage turned out to be:
  trainable_weights / frozen_weights  parameters, by requires_grad (a bitsandbytes 4-bit
                                      weight's quantization constants with it)
  gradients                           a parameter's .grad when an optimizer stepped or the
                                      step ended (gradient_of: an integer weight's float_grad)
  optimizer_state                     any tensor reachable from optimizer.state (moments,
                                      GaLore projectors, 8-bit absmax and quantization maps)
  activations                         every other tensor created inside a module's forward
                                      (the loss included) or by the backward: saved
                                      tensors and their gradients
  other                               everything else: the step's batch, optimizer-step and
                                      clipping temporaries, buffers, tensors that existed
                                      before tracking and are none of the above

Only training memory is counted: batches drawn through `untracked` are made with tracking
paused, so the data pipeline's tensors (a corpus's tables, a tokenizer's caches, the ops that
build a batch) stay out of every figure, and a batch is counted from its first use in the step
until it is freed.

A storage can also change size without any op: FSDP2 frees and re-allocates its unsharded
parameters with UntypedStorage.resize_, which no dispatch mode sees; while a step is tracked
that method is wrapped to recount the storage it resizes (as PyTorch's MemTracker does).
"""

import itertools
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode, is_traceable_wrapper_subclass
from torch.utils.weak import WeakIdKeyDictionary

from results.schema import MEMORY_CATEGORIES as CATEGORIES
from results.schema import TrackerFigures

# The CUDA caching allocator hands out blocks in multiples of 512 bytes.
CUDA_ALLOCATION_GRANULARITY_BYTES = 512


def tensors_in(*values) -> list[torch.Tensor]:
    """The tensors in an op's arguments or outputs, which nest them in tuples, lists and dicts
    only. (pytree's tree_leaves finds the same, asking of every value which of its registered
    container types it is: on every op of every trace and tracked step.)"""
    found, pending = [], list(reversed(values))
    while pending:  # depth first, in order: storages get their keys in the order pytree gave them
        value = pending.pop()
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            pending.extend(reversed(value))
        elif isinstance(value, dict):
            pending.extend(reversed(value.values()))
    return found


def plain_tensors(tensor: torch.Tensor):
    """The tensors that own memory behind `tensor`: itself, or for a wrapper subclass (torchao's
    quantized optimizer states, FSDP2's DTensors) its inner tensors, whose storages are the real
    bytes (a DTensor also names its device mesh, which holds none)."""
    if is_traceable_wrapper_subclass(tensor):
        names, _ = tensor.__tensor_flatten__()
        for name in names:
            inner = getattr(tensor, name)
            if isinstance(inner, torch.Tensor):
                yield from plain_tensors(inner)
    else:
        yield tensor


def parameter_tensors(parameter: torch.Tensor):
    """The tensors that hold a parameter: its plain tensors, and for a bitsandbytes 4-bit weight
    (Params4bit) the quantization constants on its quant_state (absmax per block, the code,
    and the nested quantization's), which are weights in all but name."""
    yield from plain_tensors(parameter)
    quant_state = getattr(parameter, "quant_state", None)
    if quant_state is not None:
        yield from tensors_within(quant_state)


def tensors_within(value, seen=None):
    """Every tensor reachable from an optimizer-state value: mappings, sequences, and the
    attributes of plain objects (galore-torch keeps its projector matrix on an object)."""
    seen = set() if seen is None else seen
    if id(value) in seen or isinstance(value, (str, bytes, int, float, bool, type(None), torch.nn.Module)):
        return
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        yield from plain_tensors(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from tensors_within(item, seen)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from tensors_within(item, seen)
    elif hasattr(value, "__dict__"):
        yield from tensors_within(vars(value), seen)


def gradient_of(parameter: torch.Tensor) -> torch.Tensor | None:
    """A parameter's gradient: its .grad, or, for an integer weight, which torch lets hold no
    float .grad (Q-GaLore's INT8 codes, methods/int8_linear.py), the one it keeps as float_grad."""
    return parameter.grad if parameter.grad is not None else getattr(parameter, "float_grad", None)


@dataclass
class StepMemory:
    """Tracker figures of one tracked step, in bytes."""

    peak_bytes: int
    at_peak_bytes: dict[str, int]
    at_step_end_bytes: dict[str, int]
    refresh: bool = False
    """Whether the method recomputed part of its state in this step (GaLore's projectors)."""
    outside_optimizer_peak_bytes: int | None = None
    """The highest total outside optimizer.step calls: the forward and backward's peak, which
    grows with the batch while the optimizer step's does not (fit searches extrapolate it)."""


@dataclass
class _Snapshot:
    live_bytes: dict[int, int] = field(default_factory=dict)
    total_bytes: int = 0


class MemoryTracker(TorchDispatchMode):
    """Watches the training steps run inside `with tracker.step():`; `steps` collects one
    StepMemory per step. Create it after the method has prepared the model; the steps it
    watches must be the training's first ones, in order, so that is_refresh_step (the
    Training's) can tell refresh steps by index."""

    def __init__(self, model: torch.nn.Module, optimizer, allocation_granularity_bytes: int = 1,
                 is_refresh_step=None):
        super().__init__()
        self.is_refresh_step = is_refresh_step
        self.model = model
        self.optimizer = optimizer
        self.granularity_bytes = allocation_granularity_bytes
        self.steps: list[StepMemory] = []
        self._key_of = WeakIdKeyDictionary()  # storage -> key
        self._new_keys = itertools.count(1)  # never reused: categories outlive storages
        self._references: dict[int, weakref.ref] = {}  # the live storages' weak references
        self._live_bytes: dict[int, int] = {}
        self._total_bytes = 0
        self._created_in_pass: set[int] = set()
        self._optimizer_depth = 0
        self._forward_depth = 0
        self._trainable: set[int] = set()
        self._frozen: set[int] = set()
        self._gradients: set[int] = set()
        self._optimizer_state: set[int] = set()
        self._peak = _Snapshot()
        self._peak_pending = False
        self._outside_optimizer_peak_bytes = 0
        self._paused = False

    # -- storages ---------------------------------------------------------------------

    def _rounded(self, nbytes: int) -> int:
        return -(-nbytes // self.granularity_bytes) * self.granularity_bytes

    def _key(self, tensor: torch.Tensor, existed_before: bool = False) -> int:
        storage = tensor.untyped_storage()
        key = self._key_of.get(storage)
        if key is None:
            key = next(self._new_keys)
            self._key_of[storage] = key
            self._references[key] = weakref.ref(storage, lambda _, key=key: self._freed(key))
            self._live_bytes[key] = 0
            if not existed_before and not self._optimizer_depth and (
                self._forward_depth or torch._C._current_graph_task_id() != -1
            ):
                self._created_in_pass.add(key)
        # A known storage can have grown since (resize_ by ops with out= arguments).
        nbytes = self._rounded(storage.nbytes())
        if nbytes != self._live_bytes[key]:
            self._count(key, nbytes)
        return key

    def _count(self, key: int, nbytes: int):
        """Storage `key` holds nbytes from now on."""
        if nbytes < self._live_bytes[key]:
            self._settle_peak()
        self._total_bytes += nbytes - self._live_bytes[key]
        self._live_bytes[key] = nbytes
        if self._total_bytes > self._peak.total_bytes:
            self._peak.total_bytes = self._total_bytes
            self._peak_pending = True
        if not self._optimizer_depth and self._total_bytes > self._outside_optimizer_peak_bytes:
            self._outside_optimizer_peak_bytes = self._total_bytes

    def _settle_peak(self):
        # Nothing shrank between the latest peak and now, so the live set still is the peak's:
        # copy it here, before the first storage shrinks or is freed, rather than on every new peak.
        if self._peak_pending:
            self._peak.live_bytes = dict(self._live_bytes)
            self._peak_pending = False

    def _freed(self, key: int):
        self._settle_peak()
        self._total_bytes -= self._live_bytes.pop(key)
        del self._references[key]

    def _resized(self, storage: torch.UntypedStorage):
        key = self._key_of.get(storage)
        if key is not None:  # an unknown storage is counted from its first use
            self._count(key, self._rounded(storage.nbytes()))

    @contextmanager
    def _seeing_resizes(self):
        resize = torch.UntypedStorage.resize_

        def counted_resize(storage, nbytes):
            resized = resize(storage, nbytes)
            self._resized(storage)
            return resized

        torch.UntypedStorage.resize_ = counted_resize
        try:
            yield
        finally:
            torch.UntypedStorage.resize_ = resize

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        outputs = func(*args, **(kwargs or {}))
        if self._paused:
            return outputs
        # Inputs first: a tensor made before tracking began is counted from its first use.
        for tensor in tensors_in(args, kwargs):
            for plain in plain_tensors(tensor):
                self._key(plain, existed_before=True)
        for tensor in tensors_in(outputs):
            for plain in plain_tensors(tensor):
                self._key(plain)
        return outputs

    # -- what each storage is -----------------------------------------------------------

    def _note_model(self):
        # plain_tensors: under FSDP2 parameters and gradients are DTensors; a rank holds their local shards.
        for parameter in self.model.parameters():
            for plain in parameter_tensors(parameter):
                key = self._key(plain, existed_before=True)
                # As it is now: block-wise methods (LISA, BAdam) switch which layers train.
                (self._trainable if parameter.requires_grad else self._frozen).add(key)
                (self._frozen if parameter.requires_grad else self._trainable).discard(key)
            gradient = gradient_of(parameter)
            for plain in plain_tensors(gradient) if gradient is not None else ():
                self._gradients.add(self._key(plain, existed_before=True))
        for buffer in self.model.buffers():
            self._key(buffer, existed_before=True)

    def _note_optimizer_state(self, optimizer):
        for tensor in tensors_within(optimizer.state):
            self._optimizer_state.add(self._key(tensor, existed_before=True))

    def _before_optimizer_step(self, optimizer, args, kwargs):
        self._optimizer_depth += 1
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                gradient = gradient_of(parameter)
                for plain in plain_tensors(gradient) if gradient is not None else ():
                    self._gradients.add(self._key(plain, existed_before=True))

    def _after_optimizer_step(self, optimizer, args, kwargs):
        self._optimizer_depth -= 1
        self._note_optimizer_state(optimizer)

    def _enter_forward(self, module, args):
        self._forward_depth += 1

    def _leave_forward(self, module, args, output):
        self._forward_depth -= 1

    def _category(self, key: int) -> str:
        if key in self._trainable:
            return "trainable_weights"
        if key in self._frozen:
            return "frozen_weights"
        if key in self._gradients:
            return "gradients"
        if key in self._optimizer_state:
            return "optimizer_state"
        if key in self._created_in_pass:
            return "activations"
        return "other"

    def _breakdown(self, live_bytes: dict[int, int]) -> dict[str, int]:
        totals = dict.fromkeys(CATEGORIES, 0)
        for key, nbytes in live_bytes.items():
            totals[self._category(key)] += nbytes
        return totals

    # -- one step -------------------------------------------------------------------------

    @contextmanager
    def step(self):
        """Track one training step: `with tracker.step(): ...` appends its StepMemory."""
        self._begin()
        try:
            with self, self._seeing_resizes():
                yield self
        finally:
            self._end()

    def untracked(self, batches: Iterator) -> Iterator:
        """`batches` with every item drawn with tracking paused: what the data pipeline makes and
        keeps to make a batch is not training memory. The batch itself is counted from its first
        use in a tracked step."""

        def drawn():
            self._paused = True
            try:
                return next(batches)
            finally:
                self._paused = False

        # iter(callable, sentinel) ends where `batches` does and, unlike a generator's frame,
        # holds no drawn batch: each lives no longer than its step holds it.
        return iter(drawn, None)

    def _begin(self):
        self._optimizer_depth = self._forward_depth = 0
        self._note_model()
        self._note_optimizer_state(self.optimizer)
        self._peak = _Snapshot(dict(self._live_bytes), self._total_bytes)
        self._peak_pending = False
        self._outside_optimizer_peak_bytes = self._total_bytes
        self._hooks = [
            register_optimizer_step_pre_hook(self._before_optimizer_step),
            register_optimizer_step_post_hook(self._after_optimizer_step),
            register_module_forward_pre_hook(self._enter_forward),
            register_module_forward_hook(self._leave_forward, always_call=True),
        ]

    def _end(self):
        for hook in self._hooks:
            hook.remove()
        self._note_model()
        self._note_optimizer_state(self.optimizer)
        if self._peak_pending:
            self._peak.live_bytes = dict(self._live_bytes)
            self._peak_pending = False
        self.steps.append(
            StepMemory(
                peak_bytes=self._peak.total_bytes,
                at_peak_bytes=self._breakdown(self._peak.live_bytes),
                at_step_end_bytes=self._breakdown(self._live_bytes),
                refresh=bool(self.is_refresh_step and self.is_refresh_step(len(self.steps))),
                outside_optimizer_peak_bytes=self._outside_optimizer_peak_bytes,
            )
        )

    def summary(self) -> TrackerFigures:
        """The record's figures of the tracked steps (see summarize)."""
        return summarize(self.steps)


def summarize(steps: list[StepMemory]) -> TrackerFigures:
    """The highest peak of the steps with its breakdown, the breakdown at the end of the last
    step (the steady state), and the highest peaks of the refresh steps and of the others
    apart; every figure None without steps."""
    if not steps:
        return TrackerFigures()
    highest = max(steps, key=lambda s: s.peak_bytes)
    return TrackerFigures(
        tracker_peak_bytes=highest.peak_bytes,
        tracker_peak_step=steps.index(highest),
        tracker_at_peak_bytes=highest.at_peak_bytes,
        tracker_at_step_end_bytes=steps[-1].at_step_end_bytes,
        tracker_steady_peak_bytes=max((s.peak_bytes for s in steps if not s.refresh), default=None),
        tracker_refresh_peak_bytes=max((s.peak_bytes for s in steps if s.refresh), default=None),
    )
