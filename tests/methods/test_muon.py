"""Muon: torch's Muon on the hidden 2-D weights, AdamW on the rest, behind one optimizer face."""

import re

import pytest
import torch

from core.options import OptionError
from methods import METHODS
from methods.blocks import hidden_matrices
from tests.conftest import tiny_spec
from tests.methods.test_successors import FLOAT32_BYTES, assert_loss_falls, trained
from workloads import WORKLOADS


def muon_state_bytes(model) -> int:
    """One float32 momentum buffer per hidden matrix (Muon keeps no step count); AdamW's two
    float32 moments and its float32 step tensor for every other parameter."""
    hidden = {id(p) for p in hidden_matrices(model)}
    momentum = sum(p.numel() for p in model.parameters() if id(p) in hidden)
    adamw = sum(2 * p.numel() + 1 for p in model.parameters() if id(p) not in hidden)
    return (momentum + adamw) * FLOAT32_BYTES


def test_muon_trains_and_keeps_one_momentum_per_hidden_matrix(one_thread):
    curve, state_bytes, model = trained("muon", {}, lr=3e-3)
    assert_loss_falls(curve)
    assert state_bytes == muon_state_bytes(model)


@pytest.mark.parametrize("workload, data, per_layer", [
    ("llama", {}, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    ("roberta_glue", {"task": "synthetic-classification"},
     ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")),
])
def test_hidden_matrices_are_the_linear_weights_inside_the_repeated_layers(workload, data, per_layer):
    model = WORKLOADS[workload].build_model(tiny_spec(workload=workload, data=data))
    hidden = {id(p) for p in hidden_matrices(model)}
    names = [name for name, p in model.named_parameters() if id(p) in hidden]
    layers = model.config.num_hidden_layers
    assert len(names) == layers * len(per_layer)
    assert all(".layer" in name and name.endswith(".weight") for name in names)
    assert not any(part in name for name in names for part in ("embed", "lm_head", "classifier", "norm", "Norm"))


def test_the_face_steps_both_optimizers_and_the_schedule_sets_both_lrs():
    spec = tiny_spec(method="muon", method_options={"lr": 0.02, "adjust_lr_fn": "original"}, steps=10, lr=1e-3)
    workload = WORKLOADS["llama"]
    model = workload.build_model(spec)
    training = METHODS["muon"].prepare(model, spec, METHODS["muon"].parse_options(spec.method_options), workload)
    workload.loss(model, next(workload.train_batches(spec))).backward()
    training.optimizer.step()
    training.scheduler.step()
    muon, adamw = training.optimizer._optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert {group["initial_lr"] for group in muon.param_groups} == {0.02}
    assert {group["initial_lr"] for group in adamw.param_groups} == {1e-3}
    # One warm-up step of the same schedule: both at the same fraction of their peak.
    assert muon.param_groups[0]["lr"] / 0.02 == pytest.approx(adamw.param_groups[0]["lr"] / 1e-3)
    assert len(training.optimizer.state) == sum(1 for p in model.parameters())


@pytest.mark.parametrize("options, refused", [
    ({"momentum": 1.0}, "options.momentum must be in [0, 1)"),
    ({"ns_steps": 100}, "options.ns_steps must be in 1..99"),
    ({"adjust_lr_fn": "moonlight"}, "accepted: match_rms_adamw, original"),
    ({"lr": 0.0}, "options.lr must be > 0"),
])
def test_muon_refuses_options_out_of_range_in_one_line(options, refused):
    with pytest.raises(OptionError, match=re.escape(refused)):
        METHODS["muon"].parse_options(options)
