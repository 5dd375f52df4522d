"""Precision policies (core/precision.py): what each keeps per trainable parameter, the one run id
a policy has however it is spelt, and the refusals before any run."""

import pytest
import torch

from core.plan import PlannedRun
from core.spec import RunSpec, SpecError
from meters.tracker import MemoryTracker
from tests.conftest import tiny_spec
from training.loop import train
from training.preflight import PreflightError, check_run, preflight
from workloads import WORKLOADS

ADAMW_STEP_BYTES = 4
"""torch's AdamW keeps a float32 step count per parameter tensor, whatever the policy."""


@pytest.mark.parametrize("precision, weight_bytes, adamw_bytes", [("bf16-true", 2, 4), ("bf16-mixed", 4, 8),
                                                                    ("32-true", 4, 8)])
def test_each_policy_keeps_its_bytes_of_weight_and_adamw_state_per_parameter(precision, weight_bytes, adamw_bytes,
                                                                               one_thread):
    spec = tiny_spec(precision=precision, steps=2, timing_warmup_steps=1, eval_batches=0)
    _, memory = train(spec, progress=False)
    parameters = list(WORKLOADS["llama"].build_model(spec).parameters())
    count = sum(parameter.numel() for parameter in parameters)
    assert memory.trainable_weight_bytes == weight_bytes * count
    assert memory.optimizer_state_bytes == adamw_bytes * count + ADAMW_STEP_BYTES * len(parameters)


def test_autocasts_weight_copies_are_counted_as_activations():
    """Made in the forward and saved for the backward: at the backward's peak the first layer's
    BF16 copy of its weight is still held, as activations."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(512, 512, bias=False), torch.nn.Linear(512, 512, bias=False))
    tracker = MemoryTracker(model, torch.optim.SGD(model.parameters()), 1, None)
    activations = {}
    for autocast in (False, True):
        with tracker.step(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            model(torch.randn(1, 512)).float().sum().backward()
        activations[autocast] = tracker.steps[-1].at_peak_bytes["activations"]
        model.zero_grad(set_to_none=True)
    assert activations[True] - activations[False] >= 512 * 512 * 2


def test_a_policy_has_one_run_id_however_it_is_spelt():
    ids = {RunSpec(workload="llama", size="tiny", method="full", **spelling).run_id
           for spelling in ({"dtype": "bfloat16"}, {"dtype": "bf16"}, {"precision": "bf16-true"},
                            {"precision": "bf16"}, {"precision": "bfloat16", "dtype": "bf16"})}
    assert len(ids) == 1
    fp32 = {RunSpec(workload="llama", size="tiny", method="full", **spelling).run_id
            for spelling in ({}, {"dtype": "fp32"}, {"precision": "32-true"}, {"precision": "float32"})}
    assert len(fp32) == 1
    assert "precision" not in RunSpec(workload="llama", size="tiny", method="full", dtype="bfloat16").to_json()
    mixed = RunSpec(workload="llama", size="tiny", method="full", precision="bf16-mixed")
    assert mixed.to_json()["precision"] == "bf16-mixed" and mixed.dtype == "float32" and mixed.run_id not in fp32


@pytest.mark.parametrize("values, message", [
    ({"precision": "bf16-mixed", "dtype": "bf16"}, "precision = 'bf16-mixed' keeps float32 weights and dtype = "
                                                   "'bfloat16' contradicts it"),
    ({"precision": "fp16"}, "precision = 'fp16' is not known; accepted: bf16-true, bf16-mixed, 32-true, 16-mixed"),
    ({"dtype": "half"}, "dtype = 'half' is not known; accepted: float32, bfloat16, bf16, fp32"),
    ({"precision": "16-mixed", "checkpoint_every": 2}, "checkpoints do not hold the GradScaler's scale yet"),
])
def test_a_bad_dtype_or_precision_is_refused_in_one_line(values, message):
    with pytest.raises(SpecError, match=message):
        RunSpec(workload="llama", size="tiny", method="full", **values)


def test_16_mixed_is_refused_off_cuda_and_for_updates_inside_the_backward():
    with pytest.raises(PreflightError, match="precision 16-mixed trains on CUDA devices only .* device = 'cpu'"):
        preflight("suite.toml", [PlannedRun("full", tiny_spec(precision="16-mixed"))])
    with pytest.raises(PreflightError, match="method galore_layerwise updates the weights inside the backward"):
        check_run(tiny_spec(method="galore_layerwise", precision="16-mixed"))
