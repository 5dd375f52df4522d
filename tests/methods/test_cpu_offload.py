"""cpu_offload_adamw (torchao's CPUOffloadOptimizer): CUDA only, so refused on CPU in one line;
its traced estimate counts device bytes only, the AdamW moments of offloaded tensors not among them."""

import pytest
import torch

from core.options import OptionError
from core.spec import DTYPES, RunSpec
from estimates.by_depth import traced_steps_by_structure
from estimates.traced import traced_steps
from methods import METHODS, prepare_training
from suites.load import load_suite
from tests.conftest import tiny_spec
from training.preflight import preflight
from workloads import WORKLOADS

MINIMAL_SIZE = 4096
"""torchao's default: smaller tensors keep their AdamW on the device."""

CPU_SUITE = """
    [defaults]
    steps = 2
    timing_warmup_steps = 1
    device = "cpu"
    [[workloads]]
    name = "llama"
    size = "tiny"
    [[methods]]
    name = "cpu_offload_adamw"
"""


def one_line_refusal(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_cpu_run_is_refused_before_it_starts_in_one_line(write_suite):
    path = write_suite(CPU_SUITE)
    with pytest.raises(ValueError) as refused:
        preflight(str(path), load_suite(path).runs)
    assert "method cpu_offload_adamw trains on CUDA devices only" in one_line_refusal(refused)
    assert "device = 'cpu' is cpu here" in str(refused.value)


def test_preparing_it_on_real_cpu_tensors_is_refused_in_one_line():
    spec = tiny_spec(method="cpu_offload_adamw")
    with pytest.raises(ValueError) as refused:
        prepare_training(WORKLOADS["llama"].build_model(spec), spec, WORKLOADS["llama"])
    assert "trains on CUDA devices only" in one_line_refusal(refused)


@pytest.mark.parametrize("options, settings, expected", [
    ({"minimal_size": 0}, {}, "options.minimal_size = 0 must be at least 1 element"),
    ({"offload_gradients": True}, {"grad_accum": 2}, "grad_accum = 2 cannot accumulate"),
    ({}, {"nproc": 2}, "trains on one process only"),
])
def test_what_it_cannot_do_is_refused_in_one_line(options, settings, expected):
    spec = tiny_spec(method="cpu_offload_adamw", method_options=options, **settings)
    with pytest.raises((OptionError, ValueError)) as refused:
        METHODS[spec.method].parse_options(spec.method_options)
        with torch.device("meta"):
            model = WORKLOADS["llama"].build_model(spec)
        prepare_training(model, spec, WORKLOADS["llama"])
    assert expected in one_line_refusal(refused)


def test_the_trace_keeps_only_the_small_tensors_adamw_on_the_device():
    spec = tiny_spec(method="cpu_offload_adamw")
    traced, _ = traced_steps(spec, steps=2, as_cuda=False)
    model = WORKLOADS["llama"].build_model(spec)
    on_device = [p.numel() for p in model.parameters() if p.numel() < MINIMAL_SIZE]
    # torch AdamW: two float32 moments and a float32 step count per tensor
    assert traced[-1].at_step_end_bytes["optimizer_state"] == sum(2 * n * 4 + 4 for n in on_device)


def test_offloaded_gradients_never_stay_on_the_device():
    traced, _ = traced_steps(tiny_spec(method="cpu_offload_adamw", method_options={"offload_gradients": True}), steps=2)
    model = WORKLOADS["llama"].build_model(tiny_spec())
    small_gradients = sum(-(-p.numel() * 4 // 512) * 512 for p in model.parameters() if p.numel() < MINIMAL_SIZE)
    assert all(step.at_step_end_bytes["gradients"] == 0 for step in traced)
    assert all(step.at_peak_bytes["gradients"] <= small_gradients + max(p.numel() * 4 for p in model.parameters())
               for step in traced)


@pytest.mark.slow
def test_the_traced_7b_device_peak_is_below_fulls_by_at_least_the_adamw_moments():
    specs = {method: RunSpec(workload="llama", size="7b", method=method, batch_size=1, seq_len=256, dtype="bfloat16",
                             device="cpu", steps=2) for method in ("full", "cpu_offload_adamw")}
    # By structure: the gate holds both methods' traces so to their full traces' bytes.
    traced = {method: traced_steps_by_structure(spec) for method, spec in specs.items()}
    peaks = {method: max(step.peak_bytes for step in steps) for method, (steps, _) in traced.items()}
    assert any("host side of torchao's CPUOffloadOptimizer" in note and "not counted" in note
               for note in traced["cpu_offload_adamw"][1])
    with torch.device("meta"):
        model = WORKLOADS["llama"].build_model(specs["full"])
    itemsize = DTYPES["bfloat16"].itemsize  # torch AdamW keeps its moments in the parameter's dtype
    offloaded_moments_bytes = sum(2 * p.numel() * itemsize for p in model.parameters() if p.numel() >= MINIMAL_SIZE)
    assert peaks["full"] - peaks["cpu_offload_adamw"] >= offloaded_moments_bytes
