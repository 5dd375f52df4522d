"""Refresh steps: GaLore's projector refresh (an SVD of each gradient) and ReLoRA's merge reported apart."""

import pytest
import torch

from estimates.traced import traced_record, traced_training
from meters.tracker import MemoryTracker, summarize
from methods.galore_adamw import GaLoreAdamW
from tests.conftest import tiny_spec


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_refresh_steps_extra_bytes_are_the_svds_temporaries(dtype):
    rows, columns, rank, gap = 96, 64, 4, 2
    torch.manual_seed(0)
    layer = torch.nn.Linear(columns, rows, bias=False, dtype=dtype)
    optimizer = GaLoreAdamW([{"params": [layer.weight], "rank": rank, "update_proj_gap": gap, "scale": 0.25,
                              "proj_type": "std"}])
    inputs = torch.randn(3, columns, dtype=dtype)
    tracker = MemoryTracker(layer, optimizer, is_refresh_step=lambda step: step % gap == 0)
    for _ in range(4):
        with tracker.step():
            layer(inputs).square().sum().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    assert [step.refresh for step in tracker.steps] == [True, False, True, False]
    steady, refresh = tracker.steps[1], tracker.steps[2]  # both with the optimizer state in place

    # The SVD runs in float32 on a float32 copy of the gradient (none needed for a float32 one)
    # and returns U (rows x k), S (k) and Vh (k x columns), k = min(rows, columns); the new
    # projector (rank x columns: a tall gradient is projected on the right) is made while the
    # old one is still in the state; in bfloat16 the float32 copy, larger, is freed before that.
    k = min(rows, columns)
    float_copy_bytes = 0 if dtype == torch.float32 else rows * columns * 4
    svd_bytes = float_copy_bytes + 4 * (rows * k + k + k * columns)
    projector_at_peak_bytes = rank * columns * dtype.itemsize if dtype == torch.float32 else 0
    assert refresh.at_peak_bytes["other"] - inputs.nbytes == svd_bytes
    assert refresh.at_peak_bytes["optimizer_state"] - steady.at_step_end_bytes["optimizer_state"] == projector_at_peak_bytes
    steady_temporaries_bytes = steady.at_peak_bytes["other"] - inputs.nbytes
    assert refresh.peak_bytes - steady.peak_bytes == svd_bytes + projector_at_peak_bytes - steady_temporaries_bytes

    summary = summarize(tracker.steps)
    assert summary.tracker_refresh_peak_bytes == refresh.peak_bytes
    assert summary.tracker_steady_peak_bytes == steady.peak_bytes


@pytest.mark.parametrize("method, has_refresh", [("galore", True), ("full", False)])
def test_traced_estimates_report_refresh_and_steady_peaks_apart(method, has_refresh):
    memory = traced_record(tiny_spec(method=method, steps=2), label=method, suite="test").memory
    assert memory.tracker_steady_peak_bytes is not None
    assert (memory.tracker_refresh_peak_bytes is not None) == has_refresh
    assert memory.tracker_peak_bytes == max(memory.tracker_steady_peak_bytes, memory.tracker_refresh_peak_bytes or 0)


@pytest.mark.slow
def test_relora_merge_steps_are_refresh_steps_and_the_warm_starts_end_is_not():
    # Restarts after steps 2 (the warm start's end: adapters switched on, nothing merged) and 4
    # (a merge), so only the 0-based step 3 merges.
    spec = tiny_spec(method="relora", steps=6, method_options={"reset_interval": 2, "warm_start_steps": 2})
    with traced_training(spec) as training:
        for _ in range(spec.steps):
            training.step()
    assert [step.refresh for step in training.steps] == [False, False, False, True, False, False]
    summary = summarize(training.steps)
    assert summary.tracker_refresh_peak_bytes == training.steps[3].peak_bytes


def test_the_outside_optimizer_peak_leaves_the_optimizer_steps_state_and_temporaries_out():
    layer = torch.nn.Linear(64, 64, bias=False)
    optimizer = torch.optim.Adam(layer.parameters(), foreach=False)
    tracker = MemoryTracker(layer, optimizer)
    with tracker.step():
        layer(torch.randn(2, 64)).sum().backward()
        optimizer.step()
    step, = tracker.steps
    weight_bytes = layer.weight.nbytes
    # Forward and backward hold the weight and its gradient; the two Adam moments the step
    # creates (and its temporaries) come only inside optimizer.step.
    assert 2 * weight_bytes <= step.outside_optimizer_peak_bytes < 3 * weight_bytes
    assert step.peak_bytes >= 4 * weight_bytes
