"""LISA: embeddings, final norm and head always trained, n_layers random layers per period, and
optimizer state only for what trains."""

import pytest

from core.options import OptionError
from meters.tracker import MemoryTracker
from methods import METHODS
from methods.blocks import repeated_layers
from tests.conftest import tiny_spec
from tests.methods.test_successors import FLOAT32_BYTES, assert_loss_falls, trained
from workloads import WORKLOADS

INTERVAL = 10
"""30 steps switch the layers twice (after steps 10 and 20)."""


def lisa_state_bytes(model, n_layers: int) -> int:
    """AdamW's two float32 moments and float32 step tensor for each parameter outside the layers
    (embeddings, final norm, LM head) and for each of n_layers layers (the tiny LLaMA's are all
    of one size, norms included)."""
    _, layers = repeated_layers(model)
    in_layers = {id(p) for layer in layers for p in layer.parameters()}
    outside = [p.numel() for p in model.parameters() if id(p) not in in_layers]
    layer = [p.numel() for p in layers[0].parameters()]
    return sum(2 * n + 1 for n in outside + n_layers * layer) * FLOAT32_BYTES


def test_lisa_trains_and_keeps_state_only_for_the_active_layers(one_thread):
    curve, state_bytes, model = trained("lisa", {"n_layers": 1, "interval": INTERVAL}, lr=3e-3)
    assert_loss_falls(curve)
    assert state_bytes == lisa_state_bytes(model, 1)


def prepared(options: dict, steps: int = 30):
    spec = tiny_spec(method="lisa", method_options=options, steps=steps, seed=3)
    workload = WORKLOADS["llama"]
    model = workload.build_model(spec)
    return spec, workload, model, METHODS["lisa"].prepare(model, spec, METHODS["lisa"].parse_options(options), workload)


def active_layers(model) -> tuple[int, ...]:
    _, layers = repeated_layers(model)
    return tuple(i for i, layer in enumerate(layers) if all(p.requires_grad for p in layer.parameters()))


def test_a_switch_freezes_the_layers_switched_off_and_drops_their_state():
    spec, workload, model, training = prepared({"n_layers": 1, "interval": 1})
    _, layers = repeated_layers(model)
    batches = workload.train_batches(spec)
    seen = [active_layers(model)]
    for step in range(8):
        workload.loss(model, next(batches)).backward()
        training.optimizer.step()
        training.optimizer.zero_grad(set_to_none=True)
        training.after_step(step)
        active = active_layers(model)
        assert len(active) == 1
        for index, layer in enumerate(layers):
            # A layer keeps its state only while it stays active: one switched on starts afresh.
            kept = index in active and index in seen[-1]
            assert all((p in training.optimizer.state) == kept for p in layer.parameters()), (step, index)
            assert all(p.grad is None for p in layer.parameters() if index not in active)
        seen.append(active)
    assert len(set(seen)) == 2  # both layers drawn in 8 periods of one step
    assert all(p.requires_grad and p in training.optimizer.state
               for name, p in model.named_parameters() if ".layers." not in name)


def test_the_draws_repeat_with_the_seed():
    draws = []
    for _ in range(2):
        _, workload, model, training = prepared({"n_layers": 1, "interval": 1})
        for step in range(6):
            training.after_step(step)
            draws.append(active_layers(model))
    assert draws[:6] == draws[6:]


def test_lisa_refuses_more_layers_than_the_model_has_in_one_line():
    with pytest.raises(ValueError, match=r"options.n_layers = 3 exceeds the model's 2 layers; accepted: 1..2"):
        prepared({"n_layers": 3})
    with pytest.raises(OptionError, match="options.interval must be >= 1"):
        METHODS["lisa"].parse_options({"interval": 0})


def test_the_tracker_counts_layers_switched_off_as_frozen():
    spec, workload, model, training = prepared({"n_layers": 1, "interval": 1})
    tracker = MemoryTracker(model, training.optimizer)
    batches = workload.train_batches(spec)
    seen = set()
    for step in range(8):
        seen.add(active_layers(model))
        with tracker.step():
            workload.loss(model, next(batches)).backward()
            training.optimizer.step()
            training.optimizer.zero_grad(set_to_none=True)
        training.after_step(step)
    assert len(seen) == 2
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    # The last step ran before its switch: one layer trained, as now (both layers are one size).
    end = tracker.steps[-1].at_step_end_bytes
    assert (end["trainable_weights"], end["frozen_weights"]) == (trainable * FLOAT32_BYTES,
                                                                 (total - trainable) * FLOAT32_BYTES)
