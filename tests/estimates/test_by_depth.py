"""Traced estimates by structure: the extrapolation's arithmetic, the committed 7B traced baseline
reproduced to the byte from traces at a few depths, and the fall back to the full trace."""

import json
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from core.spec import RunSpec
from estimates import by_depth, traced
from estimates.by_depth import (
    FULL_TRACE_NOTE,
    PROBE_DEPTHS,
    STRUCTURE_NOTE,
    NotByStructure,
    affine_at,
    extrapolated_step,
    fill_fake_tensor_caches,
    traced_steps_by_structure,
)
from meters.tracker import StepMemory, summarize
from methods.blocks import repeated_layers
from results.baseline import gated_figures
from results.schema import Memory, Record

BASELINE = Path(__file__).parents[2] / "results" / "baselines" / "ci_traced_7b.json"


def test_a_figure_on_a_line_is_extrapolated_exactly_and_one_off_it_is_refused():
    assert affine_at([10 + 7 * depth for depth in PROBE_DEPTHS], 80) == 10 + 7 * 80
    assert affine_at([10 + 7 * depth + depth * depth for depth in PROBE_DEPTHS], 80) is None


def _probe(depth: int, forward_bytes: int) -> tuple[StepMemory, dict]:
    """A probe's step whose optimizer step's peak (weights) grows by 10 bytes a block and whose
    forward's (activations) by `forward_bytes`' growth."""
    optimizer = (1000 + 10 * depth, {"trainable_weights": 1000 + 10 * depth, "activations": 0})
    forward = (forward_bytes, {"trainable_weights": 10 * depth, "activations": forward_bytes - 10 * depth})
    peak = max(optimizer, forward, key=lambda segment: segment[0])
    step = StepMemory(peak[0], peak[1], optimizer[1], outside_optimizer_peak_bytes=forward[0])
    return step, {("forward", 0): forward, ("optimizer step", None): optimizer}


def test_a_segment_that_overtakes_the_peak_beyond_the_probes_holds_it_at_full_depth():
    probes, segments = zip(*(_probe(depth, 500 + 100 * depth) for depth in PROBE_DEPTHS))
    assert all(probe.at_peak_bytes["activations"] == 0 for probe in probes)  # the optimizer step's at every probe
    step = extrapolated_step(list(probes), list(segments), 32, 1)
    assert step.peak_bytes == step.outside_optimizer_peak_bytes == 500 + 100 * 32
    assert step.at_peak_bytes == {"trainable_weights": 320, "activations": 500 + 90 * 32}
    assert step.at_step_end_bytes == {"trainable_weights": 1320, "activations": 0}


def test_a_peak_that_moves_between_segments_at_the_probes_is_the_highest_line_at_full_depth():
    # The optimizer step holds the peak at 2 and 3 blocks, the forward at 4: the step's peak is
    # on no line, each segment's is.
    probes, segments = zip(*(_probe(depth, 790 + 65 * depth) for depth in PROBE_DEPTHS))
    assert affine_at([probe.peak_bytes for probe in probes], 32) is None
    step = extrapolated_step(list(probes), list(segments), 32, 1)
    assert step.peak_bytes == 790 + 65 * 32
    assert step.at_peak_bytes == {"trainable_weights": 320, "activations": 790 + 55 * 32}


def test_a_moving_peak_beside_a_segment_off_its_line_is_refused():
    probes, segments = zip(*(_probe(depth, 790 + 65 * depth) for depth in PROBE_DEPTHS))
    for peaks, wobble in zip(segments, (5, 6, 8)):  # low, never the highest, but off its line
        peaks[("end", None)] = (wobble, {"trainable_weights": 0, "activations": wobble})
    with pytest.raises(NotByStructure, match="peak \\(with the end off its line\\) is not affine"):
        extrapolated_step(list(probes), list(segments), 32, 1)


def test_a_segment_off_its_line_that_may_be_highest_at_full_depth_is_refused():
    probes, segments = zip(*(_probe(depth, forward) for depth, forward in zip(PROBE_DEPTHS, (700, 800, 1000))))
    with pytest.raises(NotByStructure, match="not affine in the blocks"):
        extrapolated_step(list(probes), list(segments), 32, 1)


def _gated(steps: list[StepMemory], spec: RunSpec) -> dict[str, int]:
    record = Record(run_id=spec.run_id, suite="test", label=spec.method, spec=spec, status="ok",
                    kind="traced_estimate", memory=Memory.of(summarize(steps)))
    return gated_figures(record)


# Every kind: Adam on all, a projection with refresh steps, a layer-wise update, a per-model
# partition (Adam-mini), a block-coordinate method (BAdam's one block training).
@pytest.mark.slow
# LoRA and QLoRA: the peak moves between segments from one probe to the next.
@pytest.mark.parametrize("method", ["full", "galore", "galore_layerwise", "adam_mini", "badam", "lora", "qlora"])
def test_traced_by_structure_reproduces_the_committed_7b_baseline_to_the_byte(method):
    spec = RunSpec(workload="llama", size="7b", method=method, batch_size=1, seq_len=256, dtype="bfloat16",
                   device="cpu", steps=2)
    baseline = {run["run_id"]: run["figures_bytes"] for run in json.loads(BASELINE.read_text())["runs"]}[spec.run_id]
    steps, notes = traced_steps_by_structure(spec, spec.steps)
    assert any(note.startswith(STRUCTURE_NOTE) for note in notes), notes
    figures = _gated(steps, spec)
    assert {name: figures[name] for name in baseline} == baseline


def _small_spec(method: str) -> RunSpec:
    return RunSpec(workload="llama", size="60m", method=method, batch_size=1, seq_len=64, dtype="bfloat16",
                   device="cpu", steps=2)


def _fell_back_to_the_full_trace(spec: RunSpec) -> list[str]:
    """The notes saying why the spec's trace by structure fell back to the full trace, whose
    figures it must then give."""
    steps, notes = by_depth.traced_steps_by_structure(spec, spec.steps)
    in_full, _ = traced.traced_steps(spec, spec.steps)
    assert steps == in_full
    return [note for note in notes if note.startswith(FULL_TRACE_NOTE)]


@pytest.mark.slow
def test_a_method_whose_memory_is_not_affine_in_the_blocks_is_traced_in_full(monkeypatch):
    """A stand-in method: full AdamW plus a trained tensor of blocks squared elements."""
    prepare_training = traced.prepare_training

    def quadratic_in_depth(model, spec, workload):
        _, layers = repeated_layers(model)
        model.register_parameter("quadratic", torch.nn.Parameter(torch.zeros(len(layers) ** 2 * 1024)))
        return prepare_training(model, spec, workload)

    monkeypatch.setattr(traced, "prepare_training", quadratic_in_depth)  # the forked probes inherit it
    fell_back = _fell_back_to_the_full_trace(_small_spec("full"))
    assert len(fell_back) == 1 and "not affine in the blocks" in fell_back[0], fell_back


@pytest.mark.slow
def test_a_method_that_trains_some_blocks_and_not_others_is_traced_in_full():
    """LISA trains two layers drawn by index: at 2 blocks every block, at 3 and 4 some."""
    assert _fell_back_to_the_full_trace(_small_spec("lisa")) == [
        f"{FULL_TRACE_NOTE} step 0 trains some blocks and not others"]


@pytest.mark.slow
def test_a_layerwise_update_whose_peak_is_in_the_first_blocks_backward_is_traced_by_structure():
    """8-bit GaLore layer-wise at 65B: step 0 makes each block's optimizer state in its backward,
    more than the block frees, so each block's backward holds more than the one before it and
    the first block's (run last) the most. That segment was once kept under the second block's
    index, an inner block above the first and the last, and the 80 blocks were traced in full
    (48 s here). The figures are the full trace's (harness.py estimate --full-trace)."""
    spec = RunSpec(workload="llama", size="65b", method="galore8bit_layerwise", batch_size=1, seq_len=256,
                   dtype="bfloat16", device="cpu", steps=2)
    steps, notes = traced_steps_by_structure(spec, spec.steps)
    assert any(note.startswith(STRUCTURE_NOTE) for note in notes), notes
    memory = Memory.of(summarize(steps))
    assert (memory.tracker_refresh_peak_bytes, memory.tracker_steady_peak_bytes) == (184_515_554_816, 191_517_831_680)
    assert memory.tracker_at_peak_bytes == {"trainable_weights": 130_571_321_344, "frozen_weights": 0,
                                            "gradients": 524_288_000, "optimizer_state": 52_745_690_112,
                                            "activations": 7_676_527_616, "other": 4_608}


@pytest.mark.slow
def test_filling_the_fake_tensor_caches_before_the_probes_fork_moves_no_figure():
    spec = _small_spec("galore")
    FakeTensorMode.cache.clear()
    cold = traced_steps_by_structure(spec, spec.steps)
    assert not FakeTensorMode.cache  # the probes filled their own
    fill_fake_tensor_caches(spec)
    assert FakeTensorMode.cache
    assert traced_steps_by_structure(spec, spec.steps) == cold
