"""The run spec validates itself, whoever builds it: every field's type and range, and the
fields that must agree, each refused in one line naming the field and what it accepts."""

import math

import pytest

from core.spec import RunSpec, SpecError

BASE = dict(workload="llama", size="tiny", method="full")

REFUSED = {
    "grad_accum": (0, "grad_accum = 0 is out of range; accepted: an integer >= 1"),
    "steps": (-1, "steps = -1 is out of range; accepted: an integer >= 1"),
    "batch_size": (2.5, "batch_size = 2.5 must be an integer"),
    "seq_len": (True, "seq_len = True must be an integer"),
    "lr": (0.0, "lr = 0.0 is out of range; accepted: a number > 0"),
    "weight_decay": (-0.1, "weight_decay = -0.1 is out of range; accepted: a number >= 0"),
    "grad_clip": (-1.0, "grad_clip = -1.0 is out of range; accepted: a number >= 0"),
    "warmup_fraction": (5, "warmup_fraction = 5 is out of range; accepted: a number from 0 to 1"),
    "timing_warmup_steps": (-2, "timing_warmup_steps = -2 is out of range; accepted: an integer >= 0"),
    "eval_batches": (-1, "eval_batches = -1 is out of range; accepted: an integer >= 0"),
    "checkpoint_every": (-1, "checkpoint_every = -1 is out of range; accepted: an integer >= 0"),
    "seed": (-3, "seed = -3 is out of range; accepted: an integer >= 0"),
    "nproc": (0, "nproc = 0 is out of range; accepted: an integer >= 1"),
    "dtype": ("float16", "dtype = 'float16' is not known; accepted: float32, bfloat16, bf16, fp32"),
    "sharding": ("zero3", "sharding = 'zero3' is not known; accepted: none, fsdp2"),
    "conventions": ("torchtune", "conventions = 'torchtune' is not known; accepted: reference, hf"),
    "device": ("cpu:banana", "device = 'cpu:banana' is not known; accepted: auto, cpu, cuda, cuda:N"),
    "method_options": ([], "method_options = [] must be a table"),
    "method": ("", "method is empty; it must name one"),
}


@pytest.mark.parametrize("field", REFUSED)
def test_a_field_out_of_its_range_or_type_is_refused_in_one_line(field):
    value, message = REFUSED[field]
    with pytest.raises(SpecError) as refused:
        RunSpec(**{**BASE, field: value})
    assert str(refused.value) == message


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_number_that_is_not_finite_is_refused(value):
    with pytest.raises(SpecError, match=r"^lr = .* is not finite; accepted: a number$"):
        RunSpec(**BASE, lr=value)


@pytest.mark.parametrize("fields, message", [
    ({"nproc": 2, "batch_size": 3}, "batch_size = 3 must be a multiple of the world size nproc x nnodes = 2"),
    ({"sharding": "fsdp2"}, 'sharding = "fsdp2" needs more than one rank'),
    ({"nnodes": 2, "batch_size": 2}, "nnodes = 2 needs rdzv_endpoint"),
    ({"nproc": 2, "checkpoint_every": 5}, "checkpoint_every = 5 with 2 ranks"),
])
def test_fields_that_must_agree_are_refused_together(fields, message):
    with pytest.raises(SpecError) as refused:
        RunSpec(**BASE, **fields)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


@pytest.mark.parametrize("fields", [
    {"warmup_fraction": 0.0}, {"warmup_fraction": 1}, {"timing_warmup_steps": 0}, {"eval_batches": 0},
    {"grad_clip": 0.0}, {"device": "cuda:3"}, {"device": "auto"}, {"lr": 1}, {"nproc": 2, "batch_size": 4},
    {"nproc": 2, "nnodes": 2, "batch_size": 4, "rdzv_endpoint": "node0:29500", "sharding": "fsdp2"},
])
def test_values_at_the_edges_of_their_ranges_are_accepted(fields):
    assert RunSpec(**BASE, **fields).world_size >= 1


def test_a_replaced_spec_is_checked_again():
    from dataclasses import replace

    with pytest.raises(SpecError, match="batch_size = 0 is out of range"):
        replace(RunSpec(**BASE), batch_size=0)


def test_conventions_left_at_reference_keep_the_run_id_it_had_before_the_field():
    # The CI memory gate's committed baselines key on run ids: a field at its default stays out of the hash.
    reference = RunSpec(**BASE)
    assert "conventions" not in reference.to_json()
    assert RunSpec(**BASE, conventions="hf").run_id != reference.run_id
