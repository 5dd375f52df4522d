"""Traced estimates by structure: a decoder's repeated blocks are alike, so what a step holds at
any moment that sits at a fixed place in the step (before the blocks, in the first or the last
block's forward or backward, after them, in the optimizer step) is an affine function of the
number of blocks. The model is traced at PROBE_DEPTHS blocks (the rest of the model unchanged,
each depth in a forked process of its own, stepped together) and extrapolated to the full depth:
a fraction of the full trace's work.

Each probe's tracker also keeps the peak of every segment of a step and the breakdown at it. At
the full depth the step's peak is the highest segment's there (it may be another segment than at
the probes: low_rank's moves from the optimizer step to the end of the forward), its breakdown
that segment's; the breakdown at the step's end, and the forward and backward's peak likewise.
Where every segment's peak is on its line, the step's own peak need not be (LoRA's moves from
the backward's end to the forward's between 3 and 4 blocks): it is their highest. Where one is
off its line, the step's peak must be on a line too. What the lines need, that a block's
segment sits at the same place in any model, holds only where the blocks train alike: a
method that trains some blocks and not others (LISA's drawn layers, BAdam's active block once
it reaches the layers) puts a block's state by its index, so the blocks' trained parameters
must be alike at each step's start and end.

Exactness is checked, never assumed: the figures used must lie on one line through the three
depths (zero second difference), a step is a refresh step at every depth or at none, the
segments hold the peak the tracker saw at every probe, and an inner block's segment stays below
the first and the last block's. Where a check fails (a method whose state or peak does not grow
by the block: LISA's fixed number of trained layers, a segment not on a line that is highest at
the full depth) the training is traced in full instead, the steps so far replayed, and its notes
say why. A segment not on its line is bounded by its largest rise per block, which is an
assumption: it only decides whether the segment could be the highest, never a figure.
"""

import copy
import multiprocessing
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace

import torch
from torch._subclasses.fake_tensor import unset_fake_temporarily
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils._pytree import tree_leaves

from core.spec import RunSpec
from estimates import EstimateRequest
from estimates.traced import estimate_each, traced_steps, traced_training
from meters.tracker import MemoryTracker, StepMemory
from methods.blocks import repeated_layers
from workloads import WORKLOADS

PROBE_DEPTHS = (2, 3, 4)
"""Blocks of the traces extrapolated from: two draw the line, the third checks it. Two at least,
so that the first and the last block are two blocks (a single block is both, which is not how
either sits in a deeper model)."""


STRUCTURE_NOTE = "extrapolated from traces at"
"""How the notes of a training traced by structure begin (what they say follows)."""
FULL_TRACE_NOTE = "traced in full, not by structure:"
"""How the notes of a training that fell back to the full trace begin (why follows)."""


class NotByStructure(Exception):
    """The model or the method's figures are not affine in the number of blocks."""


def _block_signature(block) -> list[tuple]:
    return [(name, tuple(parameter.shape), parameter.dtype, parameter.requires_grad)
            for name, parameter in block.named_parameters()]


class _WorkloadAtDepth:
    """The workload, building its model with only the first `depth` of its repeated blocks; it
    notes how many the full model has."""

    def __init__(self, workload, depth: int):
        self._workload, self._depth = workload, depth
        self.full_depth = None

    def __getattr__(self, name):
        return getattr(self._workload, name)

    def build_model(self, spec: RunSpec):
        # The full model is checked on the meta device, outside the fake mode: at 7B that build
        # took 0.03 s, on fake tensors 0.14-0.18 s (measured), in every probe.
        with unset_fake_temporarily(), torch.device("meta"):
            full = self._workload.build_model(spec)
        name, layers = repeated_layers(full)
        self.full_depth = len(layers)
        if len({repr(_block_signature(layer)) for layer in layers}) > 1:
            raise NotByStructure(f"the {len(layers)} blocks of {name} differ in their parameters")
        layer_types = getattr(full.config, "layer_types", None)
        if layer_types and len(set(layer_types)) > 1:
            raise NotByStructure(f"the blocks are of several kinds ({', '.join(sorted(set(layer_types)))})")
        if self.full_depth <= max(PROBE_DEPTHS):
            raise NotByStructure(f"the model has {self.full_depth} blocks, not more than the probes' "
                                 f"{max(PROBE_DEPTHS)}")
        if full.config._name_or_path:  # loaded from a checkpoint: as the workload loads it, then cut
            model = self._workload.build_model(spec)
            del model.get_submodule(name)[self._depth:]
            self._cut(model.config)  # its modules share it: changed in place
            return model
        config = copy.deepcopy(full.config)  # built from its config: the same class, at this depth
        self._cut(config)
        return type(full)(config)

    def _cut(self, config):
        """`config` at this probe's depth."""
        config.num_hidden_layers = self._depth
        if getattr(config, "layer_types", None):
            config.layer_types = config.layer_types[:self._depth]


class _SegmentTracker(MemoryTracker):
    """The memory tracker, also keeping the highest total of each segment of a step (the forward
    and the backward of each block, what comes before, between and after them, the optimizer
    step) and the breakdown at it. Each segment's peak is a candidate for the step's: the one
    highest at the full depth is the step's there. (It reads the tracker's running total and live
    storages where the tracker updates them, and copies them as lazily as it does.)"""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.segment_peaks: dict[tuple, tuple[int, dict[str, int]]] = {}
        """The latest step's segments, in the order they began: (peak bytes, breakdown at it)."""
        self.blocks_train_alike = True
        """Whether every block trained the same parameters at the latest step's start and end."""
        self._snapshots: dict[tuple, tuple[int, dict[int, int]]] = {}
        _, self._blocks = repeated_layers(self.model)
        self._open(("before the blocks", None))

    def _open(self, segment: tuple):
        self._segment, self._segment_peak_bytes = segment, self._total_bytes
        self._segment_live, self._segment_pending = {}, True

    def _settle_segment(self):
        # As the tracker's _settle_peak: the live set is copied before the first storage shrinks.
        if self._segment_pending:
            self._segment_live, self._segment_pending = dict(self._live_bytes), False

    def _count(self, key: int, nbytes: int):
        if nbytes < self._live_bytes[key]:  # a storage shrinks (FSDP2's resize_)
            self._settle_segment()
        super()._count(key, nbytes)
        if self._total_bytes > self._segment_peak_bytes:
            self._segment_peak_bytes, self._segment_pending = self._total_bytes, True

    def _freed(self, key: int):
        self._settle_segment()
        super()._freed(key)

    def _cut(self, segment: tuple):
        self._settle_segment()
        held = self._snapshots.get(self._segment)
        if held is None or self._segment_peak_bytes > held[0]:  # a segment met again: its first highest
            self._snapshots[self._segment] = (self._segment_peak_bytes, self._segment_live)
        self._open(segment)

    def _trained_alike(self) -> bool:
        return len({tuple(parameter.requires_grad for parameter in block.parameters()) for block in self._blocks}) == 1

    def _begin(self):
        super()._begin()
        self.blocks_train_alike = self._trained_alike()
        self._snapshots = {}
        self._open(("before the blocks", None))
        in_backward = lambda: torch._C._current_graph_task_id() != -1  # noqa: E731
        before = {"output": None}  # the id of the latest block's output this step
        for index, block in enumerate(self._blocks):
            def entered(module, args, kwargs, index=index):
                if in_backward():  # recomputed by activation checkpointing: part of the block's backward
                    return
                self._cut(("forward", index))
                hidden = next((t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)), None)
                # A block's input that is the block before's output: its gradient begins that
                # block's backward (its hook, registered first, runs first), and nothing comes
                # between. A hook here would open a segment after it, under this block's index,
                # holding the block before's backward: block 0's under block 1, an inner block.
                if hidden is not None and hidden.requires_grad and id(hidden) != before["output"]:
                    hidden.register_hook(lambda _: self._cut(("backward after", index)))

            def left(module, args, kwargs, output, index=index):
                if in_backward():
                    return
                self._cut(("forward after", index))
                hidden = next((t for t in tree_leaves(output) if isinstance(t, torch.Tensor)), None)
                if hidden is not None and hidden.requires_grad:
                    before["output"] = id(hidden)
                    hidden.register_hook(lambda _: self._cut(("backward", index)))

            self._hooks += [block.register_forward_pre_hook(entered, with_kwargs=True),
                            block.register_forward_hook(left, with_kwargs=True)]
        self._hooks.append(register_optimizer_step_pre_hook(
            lambda *_: None if in_backward() else self._cut(("optimizer step", None))))

    def _end(self):
        self._cut(("end", None))
        super()._end()
        self.blocks_train_alike = self.blocks_train_alike and self._trained_alike()
        # Categories are read once the step has ended, as the tracker reads its own.
        self.segment_peaks = {segment: (peak_bytes, self._breakdown(live))
                              for segment, (peak_bytes, live) in self._snapshots.items()}


def fill_fake_tensor_caches(spec: RunSpec):
    """Two steps of full AdamW on the spec's model at the fewest blocks probed, traced here and
    thrown away, so that the processes forked after it (an estimate's probes, a fit's searches
    and theirs) find torch's fake-tensor caches (a class-wide dispatch cache, kernels looked up
    on first use) filled: each would otherwise fill its own, half a second of CPU for the
    model's build and its first steps, three probes a method. Caches hold shapes, never memory:
    no figure moves. Nothing for several ranks: their training is traced in full."""
    if spec.world_size > 1:
        return
    workload = _WorkloadAtDepth(WORKLOADS[spec.workload], PROBE_DEPTHS[0])
    try:
        with traced_training(replace(spec, method="full", method_options={}), workload=workload) as training:
            training.step()
            training.step()
    except NotByStructure:  # the model is traced in full: nothing to fill for probes
        pass


def _serve(spec: RunSpec, depth: int, connection):
    """A probe: the spec's training at `depth` blocks, stepping at each batch size received (None
    stops it) and answering with the step's figures, its segments' peaks, the notes and whether
    its blocks trained alike, or with the error."""
    try:
        workload = _WorkloadAtDepth(WORKLOADS[spec.workload], depth)
        with traced_training(spec, workload=workload, tracker_type=_SegmentTracker) as training:
            connection.send(("ready", workload.full_depth))
            while (batch_size := connection.recv()) is not None:
                step = training.step(batch_size)
                connection.send(("step", step, training.tracker.segment_peaks, list(training.notes),
                                 training.tracker.blocks_train_alike))
    except Exception as error:  # noqa: BLE001 - any failure of a probe means: trace in full
        connection.send(("error", f"traced at {depth} block{'s' * (depth > 1)}: {type(error).__name__}: {error}"))


def _shown(values: list[int]) -> str:
    return ", ".join(f"{value} at {blocks}" for value, blocks in zip(values, PROBE_DEPTHS))


def _highest_at_depth(positions: list[dict[str, tuple]], segments: list[str], depth: int) -> tuple[str, int]:
    """The segment highest at `depth` blocks (each on its line, or bounded: _bound_at) and its
    peak there."""
    at_full_depth = {segment: _bound_at([peaks[segment][0] for peaks in positions], depth) for segment in segments}
    highest = _first_highest(at_full_depth)
    return highest, at_full_depth[highest]


def affine_at(values: list[int], depth: int) -> int | None:
    """The value at `depth` blocks on the line through the values at PROBE_DEPTHS, None when they
    are not on one line of whole bytes."""
    (low, middle, high), (value_low, value_middle, value_high) = PROBE_DEPTHS, values
    if (value_middle - value_low) * (high - middle) != (value_high - value_middle) * (middle - low):
        return None
    rise = (value_middle - value_low) * (depth - low)
    if rise % (middle - low):
        return None
    return value_low + rise // (middle - low)


def _bound_at(values: list[int], depth: int) -> int:
    """A segment's peak at `depth` blocks: on the line through its peaks at PROBE_DEPTHS, or where
    they are not on one (a few bytes' wobble of a segment that is not the step's peak) at most
    the highest peak probed plus its largest rise per block since."""
    value = affine_at(values, depth)
    if value is not None:
        return value
    rise_per_block = max((high - low) / (d_high - d_low) for low, high, d_low, d_high
                         in zip(values, values[1:], PROBE_DEPTHS, PROBE_DEPTHS[1:]))
    return int(values[-1] + max(0, rise_per_block) * (depth - PROBE_DEPTHS[-1]))


def _by_position(segment_peaks: dict[tuple, tuple], depth: int) -> dict[str, tuple]:
    """A probe's segment peaks by where they sit: a block's by first or last block; an inner
    block's must lie below the first's or the last's."""
    by_position = {}
    for (segment, block), peak in segment_peaks.items():
        if block is None:
            by_position[segment] = peak
        for position in ("first",) * (block == 0) + ("last",) * (block == depth - 1):
            by_position[f"{segment} {position} block"] = peak
    for (segment, block), (peak_bytes, _) in segment_peaks.items():
        if block not in (None, 0, depth - 1) and peak_bytes > max(by_position[f"{segment} first block"][0],
                                                                   by_position[f"{segment} last block"][0]):
            raise NotByStructure(f"the {segment} peak of an inner block is above the first's and the last's")
    return by_position


def _outside_optimizer_peak(probes: list[StepMemory], positions: list[dict[str, tuple]], depth: int, index: int) -> int:
    """The forward and backward's peak at `depth` blocks: the highest there of the peaks of the
    segments outside the optimizer step, each on its line (it may move between them as blocks
    are added, as the step's peak may). Where optimizer steps run inside the backward (layer-wise
    updates), which the tracker leaves out of this figure but the segments hold, the figure's own
    line instead: it only guides a fit's search (which batches are traced), never an answer."""
    values = [probe.outside_optimizer_peak_bytes for probe in probes]
    segments = [segment for segment in positions[0]
                if not segment.startswith("optimizer step") and all(segment in peaks for peaks in positions)]
    if any(max(peaks[segment][0] for segment in segments) != value for peaks, value in zip(positions, values)):
        value = affine_at(values, depth)
        if value is None:
            raise NotByStructure(f"step {index}'s forward and backward peak is not affine in the blocks "
                                 f"({_shown(values)} bytes)")
        return value
    highest, peak_bytes = _highest_at_depth(positions, segments, depth)
    if affine_at([peaks[highest][0] for peaks in positions], depth) is None:
        raise NotByStructure(f"step {index}'s forward and backward peak at {depth} blocks lies in the {highest}, "
                             "whose peak is not affine in the blocks")
    return peak_bytes


def extrapolated_step(probes: list[StepMemory], segment_peaks: list[dict[tuple, int]], depth: int,
                      index: int) -> StepMemory:
    """Step `index`'s figures at `depth` blocks from its figures and its segments' peaks at
    PROBE_DEPTHS; NotByStructure saying which figure is not affine or where the peak moves."""

    def at_depth(figure: str, values: list[int]) -> int:
        value = affine_at(values, depth)
        if value is None or value < 0:
            raise NotByStructure(f"step {index}'s {figure} is not affine in the blocks ({_shown(values)} bytes)")
        return value

    if len({probe.refresh for probe in probes}) > 1:
        raise NotByStructure(f"step {index} is a refresh step at some depths only")
    positions = [_by_position(peaks, probe_depth) for peaks, probe_depth in zip(segment_peaks, PROBE_DEPTHS)]
    for probe, peaks in zip(probes, positions):  # the segments hold the step's peak as the tracker saw it
        first_highest = _first_highest({segment: peak_bytes for segment, (peak_bytes, _) in peaks.items()})
        if first_highest is None or peaks[first_highest] != (probe.peak_bytes, probe.at_peak_bytes):
            raise NotByStructure(f"step {index}'s segments do not hold its peak")
    segments = [segment for segment in positions[0] if all(segment in peaks for peaks in positions)]
    highest, _ = _highest_at_depth(positions, segments, depth)
    peak_bytes = at_depth(f"peak (in the {highest})", [peaks[highest][0] for peaks in positions])
    off_line = [segment for segment in segments if affine_at([peaks[segment][0] for peaks in positions], depth) is None]
    # A segment off its line is only bounded, by a guess (_bound_at) that a rise growing with the
    # blocks breaks (BAdam's end of the forward at large batches): then the step's own peak must
    # be on a line too, and the highest segment not below it.
    if off_line and peak_bytes < at_depth(f"peak (with the {off_line[0]} off its line)",
                                          [probe.peak_bytes for probe in probes]):
        raise NotByStructure(f"step {index}'s highest segment at {depth} blocks is below the step's peak's line")
    return StepMemory(
        peak_bytes=peak_bytes,
        at_peak_bytes={category: at_depth(f"{category} at the peak (in the {highest})",
                                          [peaks[highest][1][category] for peaks in positions])
                       for category in probes[0].at_peak_bytes},
        at_step_end_bytes={category: at_depth(f"{category} at its end",
                                              [probe.at_step_end_bytes[category] for probe in probes])
                           for category in probes[0].at_step_end_bytes},
        refresh=probes[0].refresh,
        outside_optimizer_peak_bytes=_outside_optimizer_peak(probes, positions, depth, index),
    )


def _first_highest(peaks: dict[str, int]) -> str | None:
    """The segment that reaches the highest peak first (max keeps the first of equals, as the
    tracker keeps the first time a peak is reached)."""
    return max(peaks, key=peaks.get, default=None)


@dataclass
class _Probe:
    process: multiprocessing.Process
    connection: object

    def answer(self):
        try:
            return self.connection.recv()
        except EOFError:
            return ("error", f"a probe ended without answering (exit code {self.process.exitcode})")


class StructureTraining:
    """TracedTraining's face (step, steps, notes) over traces at PROBE_DEPTHS, extrapolated to
    the full depth; on the first figure that is not affine it traces the full model instead,
    replaying the steps so far. Use inside `with structure_training(spec) as training:`."""

    def __init__(self, spec: RunSpec, stack: ExitStack):
        self.spec, self._stack = spec, stack
        self.steps: list[StepMemory] = []
        self.notes: list[str] = []
        self._batch_sizes: list[int] = []
        self._full = None  # the full model's TracedTraining, once the extrapolation is refused
        self._probes: list[_Probe] = []
        self.full_depth = None
        stack.callback(self._stop_probes)
        reason = (f"{spec.world_size} ranks: sharded traces by structure are not checked against full ones"
                  if spec.world_size > 1 else self._start_probes())
        if reason:
            self._trace_in_full(reason)

    def _start_probes(self) -> str | None:
        """A probe forked per depth, each with its training built; why not, where one failed."""
        context = multiprocessing.get_context("fork")
        for depth in PROBE_DEPTHS:
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(self.spec, depth, child), daemon=True)
            process.start()
            child.close()
            self._probes.append(_Probe(process, parent))
        answers = [probe.answer() for probe in self._probes]
        error = next((answer[1] for answer in answers if answer[0] == "error"), None)
        if error is None:
            self.full_depth = answers[-1][1]
        return error

    def _stop_probes(self):
        for probe in self._probes:
            if probe.process.is_alive():
                try:
                    probe.connection.send(None)
                except (BrokenPipeError, OSError):
                    pass
            probe.process.join(timeout=10)
            if probe.process.is_alive():
                probe.process.kill()
        self._probes = []

    def _trace_in_full(self, reason: str):
        self._stop_probes()
        self._full = self._stack.enter_context(traced_training(self.spec))
        for batch_size in self._batch_sizes:
            self._full.step(batch_size)
        self.steps, self.notes = self._full.steps, self._full.notes
        self.notes.append(f"{FULL_TRACE_NOTE} {reason}")

    def step(self, batch_size: int | None = None) -> StepMemory:
        """The next training step at `batch_size` sequences (default the spec's), at full depth."""
        batch_size = self.spec.batch_size if batch_size is None else batch_size  # None tells a probe to stop
        self._batch_sizes.append(batch_size)
        if self._full is not None:
            return self._full.step(batch_size)
        for probe in self._probes:
            probe.connection.send(batch_size)
        answers = [probe.answer() for probe in self._probes]
        try:
            error = next((answer[1] for answer in answers if answer[0] == "error"), None)
            if error:
                raise NotByStructure(error)
            if not all(answer[4] for answer in answers):
                raise NotByStructure(f"step {len(self.steps)} trains some blocks and not others")
            step = extrapolated_step([answer[1] for answer in answers], [answer[2] for answer in answers],
                                     self.full_depth, len(self.steps))
        except NotByStructure as reason:
            self._trace_in_full(str(reason))
            return self.steps[-1]
        self.steps.append(step)
        self.notes[:] = answers[-1][3] + [
            f"{STRUCTURE_NOTE} {', '.join(map(str, PROBE_DEPTHS))} of the {self.full_depth} blocks: every "
            "figure of every step affine in the blocks, each step's peak in the segment highest at full depth"
        ]
        return step


@contextmanager
def structure_training(spec: RunSpec):
    """The spec's training traced by structure (StructureTraining), ready to step."""
    with ExitStack() as stack:
        yield StructureTraining(spec, stack)


def traced_steps_by_structure(spec: RunSpec, steps: int = 2) -> tuple[list[StepMemory], list[str]]:
    """traced_steps' answer (figures of the first `steps` steps, notes) from traces by structure,
    or from the full trace where the figures are not affine in the blocks."""
    with structure_training(spec) as training:
        for _ in range(steps):
            training.step()
    return training.steps, training.notes


def estimate_by_structure(specs: list[RunSpec], request: EstimateRequest) -> int:
    """`harness.py estimate`: estimate_each, traced by structure (--full-trace: in full)."""
    if request.full_trace:
        return estimate_each(specs, request, traced_steps)
    fill_fake_tensor_caches(specs[0])
    return estimate_each(specs, request, traced_steps_by_structure)
