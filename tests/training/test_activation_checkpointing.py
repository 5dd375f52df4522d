"""Activation checkpointing: a spec field that keeps older run ids, and what it saves."""

import pytest

from estimates.traced import traced_steps
from suites.load import load_suite
from tests.conftest import tiny_spec
from workloads.sizes import model_config


def test_the_default_leaves_the_field_out_of_the_id_and_true_changes_it(write_suite):
    plain, checkpointed = tiny_spec(), tiny_spec(activation_checkpointing=True)
    assert "activation_checkpointing" not in plain.to_json()
    assert checkpointed.to_json()["activation_checkpointing"] is True
    assert plain.run_id != checkpointed.run_id
    suite = load_suite(write_suite("""
        name = "ckpt"
        [defaults]
        activation_checkpointing = true
        [[workloads]]
        name = "llama"
        size = "tiny"
        [[methods]]
        name = "full"
    """))
    assert suite.runs[0].spec.activation_checkpointing


def test_checkpointing_drops_each_layers_saved_activations_but_its_input():
    """Without checkpointing each decoder layer keeps, per token, about 10 hidden-sized tensors
    (two norms' inputs and outputs, q, k, v, rotary q and k, attention output) and 4
    intermediate-sized ones (gate, up, SiLU, product); with it, only the layer's input. (LoRA
    saves more: each adapter's input and low-rank output too.)"""
    batch, seq = 4, 64
    config = model_config("llama", "tiny")
    hidden, intermediate, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    per_token_bytes = 4 * (10 * hidden + 4 * intermediate - hidden)  # float32
    expected_saving_bytes = layers * batch * seq * per_token_bytes

    def activations_at_peak(checkpointing):
        spec = tiny_spec(method="full", batch_size=batch, seq_len=seq, activation_checkpointing=checkpointing)
        steps, _ = traced_steps(spec, steps=2, as_cuda=False)
        return steps[1].at_peak_bytes["activations"]

    saving_bytes = activations_at_peak(False) - activations_at_peak(True)
    assert saving_bytes == pytest.approx(expected_saving_bytes, rel=0.2)
