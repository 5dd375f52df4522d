"""The live-tensor tracker: exact bytes per category, determinism, frozen parameters, tensors
created inside gradient hooks, storages resized without an op, and only training memory: no
data-pipeline tensor and no batch past its step."""

import math
import weakref
from dataclasses import replace

import pytest
import torch

from estimates.paper_table import REPO_CONVENTION, parameters
from meters.tracker import MemoryTracker
from methods import prepare_training
from methods.base import Training, warmup_cosine_schedule
from tests.conftest import tiny_spec
from tests.text_fixtures import make_c4_dir, make_tokenizer_dir
from training.loop import drawn_ahead, optimizer_step, train
from workloads import WORKLOADS
from workloads.sizes import model_config

FLOAT32_BYTES = 4
LORA_RANK = 8


def prepared(method: str, **spec_fields):
    spec = tiny_spec(method=method, **spec_fields)
    torch.manual_seed(0)
    workload = WORKLOADS[spec.workload]
    return spec, workload, prepare_training(workload.build_model(spec), spec, WORKLOADS[spec.workload])


def analytic_parameter_counts(method: str) -> tuple[int, int, list[int]]:
    """(trainable, frozen, sizes of the trainable tensors) from the tiny config alone."""
    config = model_config("llama", "tiny")
    hidden, intermediate, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    outside = [config["vocab_size"] * hidden] * 2 + [hidden] * (2 * layers + 1)
    matrices = [(hidden, hidden)] * 4 + [(intermediate, hidden)] * 2 + [(hidden, intermediate)]
    if method == "lora":
        factors = [size for out, inp in matrices for size in (LORA_RANK * inp, out * LORA_RANK)] * layers
        frozen = layers * sum(out * inp for out, inp in matrices)
        return sum(outside) + sum(factors), frozen, outside + factors
    weights = outside + [out * inp for out, inp in matrices] * layers
    assert sum(weights) == parameters("full", "tiny", REPO_CONVENTION)[0]
    return sum(weights), 0, weights


def analytic_state_bytes(method: str, sizes: list[int]) -> int:
    if method == "adam8bit":
        # bitsandbytes: tensors of 4096+ elements get two uint8 moments, a float32 absmax per
        # 256-element block for each, and the two 256-entry float32 maps (shared, counted once);
        # smaller ones two float32 moments. The step count is a Python int.
        large = [n for n in sizes if n >= 4096]
        small = [n for n in sizes if n < 4096]
        return sum(2 * n + 2 * FLOAT32_BYTES * math.ceil(n / 256) for n in large) + 2 * 256 * FLOAT32_BYTES + sum(
            2 * FLOAT32_BYTES * n for n in small
        )
    # torch AdamW: two float32 moments and a float32 step tensor per parameter.
    return sum(2 * FLOAT32_BYTES * n + FLOAT32_BYTES for n in sizes)


@pytest.mark.parametrize("method", ["full", "adam8bit", "lora"])
def test_weights_gradients_and_optimizer_state_match_the_analytic_count(method):
    spec, workload, training = prepared(method)
    trainable, frozen, trainable_sizes = analytic_parameter_counts(method)
    tracker = MemoryTracker(training.model, training.optimizer)
    batch = next(workload.train_batches(spec))

    with tracker.step():
        workload.loss(training.model, batch).backward()
    after_backward = tracker.steps[-1].at_step_end_bytes
    assert after_backward["trainable_weights"] == FLOAT32_BYTES * trainable
    assert after_backward["frozen_weights"] == FLOAT32_BYTES * frozen
    assert after_backward["gradients"] == FLOAT32_BYTES * trainable

    with tracker.step():
        training.optimizer.step()
        training.optimizer.zero_grad(set_to_none=True)
    after_step = tracker.steps[-1]
    assert after_step.at_step_end_bytes["optimizer_state"] == analytic_state_bytes(method, trainable_sizes)
    assert after_step.at_step_end_bytes["gradients"] == 0
    # Gradients and the new state coexist at the end of the optimizer step.
    assert after_step.at_peak_bytes["gradients"] == FLOAT32_BYTES * trainable


def test_the_peak_is_the_largest_live_total_and_categories_add_up():
    spec, workload, training = prepared("full")
    tracker = MemoryTracker(training.model, training.optimizer)
    batches = tracker.untracked(workload.train_batches(spec))
    for _ in range(2):
        with tracker.step():
            optimizer_step(spec, workload, training, batches, torch.device("cpu"))
    for step in tracker.steps:
        assert sum(step.at_peak_bytes.values()) == step.peak_bytes
        assert step.peak_bytes >= sum(step.at_step_end_bytes.values())
    # Step 0's peak is its optimizer step creating the state; step 1's is the model's forward and
    # backward (the corpus, built in step 0's untracked draw, counts in neither).
    assert tracker.steps[0].at_peak_bytes["activations"] == 0 < tracker.steps[1].at_peak_bytes["activations"]


def test_tensors_made_inside_gradient_hooks_are_counted():
    """A layer-wise update: one AdamW per parameter stepped from its gradient hook."""
    spec, workload, training = prepared("full")
    model = training.model
    per_parameter = {p: torch.optim.AdamW([p], lr=1e-3, foreach=False) for p in model.parameters()}

    def step_and_free(parameter):
        per_parameter[parameter].step()
        parameter.grad = None

    for parameter in model.parameters():
        parameter.register_post_accumulate_grad_hook(step_and_free)

    class Merged(torch.optim.Optimizer):
        def __init__(self):
            super().__init__(list(model.parameters()), {"lr": 1e-3})
            self.state = {p: o.state[p] for p, o in per_parameter.items()}

    merged = Merged()
    layerwise = Training(model, merged, warmup_cosine_schedule(merged, spec), steps_in_backward=True)
    tracker = MemoryTracker(model, merged)
    with tracker.step():
        optimizer_step(spec, workload, layerwise, workload.train_batches(spec), torch.device("cpu"))
    _, _, sizes = analytic_parameter_counts("full")
    end = tracker.steps[-1].at_step_end_bytes
    assert end["optimizer_state"] == analytic_state_bytes("full", sizes)
    assert end["gradients"] == 0
    # Full gradients never coexist: the peak holds far less than all of them.
    assert tracker.steps[-1].at_peak_bytes["gradients"] < FLOAT32_BYTES * sum(sizes) / 2


def test_only_the_timing_warm_up_steps_are_tracked():
    tracked = train(tiny_spec(steps=3, timing_warmup_steps=2, eval_batches=0), progress=False)[1]
    untracked = train(tiny_spec(steps=3, timing_warmup_steps=0, eval_batches=0), progress=False)[1]
    assert tracked.tracker_peak_step in (0, 1) and tracked.tracker_peak_bytes > 0
    assert untracked.tracker_peak_bytes is None and untracked.tracker_at_peak_bytes is None


def test_a_storage_resized_without_an_op_is_recounted_at_once():
    """FSDP2 frees and re-allocates gathered weights with UntypedStorage.resize_, which no op shows."""
    layer = torch.nn.Linear(4, 4, bias=False)
    tracker = MemoryTracker(layer, torch.optim.SGD(layer.parameters()))
    gathered_bytes = 4000
    resize = torch.UntypedStorage.resize_
    with tracker.step():
        gathered = torch.empty(gathered_bytes, dtype=torch.uint8)
        gathered.untyped_storage().resize_(0)
        later = torch.empty(gathered_bytes, dtype=torch.uint8)
    freed = tracker.steps[-1]
    assert freed.at_step_end_bytes["other"] == later.nbytes  # `later` alone
    assert freed.peak_bytes == layer.weight.nbytes + gathered_bytes  # never both at once
    with tracker.step():
        gathered.untyped_storage().resize_(gathered_bytes)
    regathered = tracker.steps[-1]
    assert regathered.at_step_end_bytes["other"] == regathered.peak_bytes - layer.weight.nbytes == 2 * gathered_bytes
    assert torch.UntypedStorage.resize_ is resize  # wrapped only while a step is tracked


def test_drawing_a_batch_ahead_keeps_no_reference_to_it():
    made = []

    def stream():
        while True:
            made.append(torch.zeros(4))
            yield {"input_ids": made.pop()}  # the stream itself holds none

    batches = drawn_ahead(stream())
    first = next(batches)["input_ids"]
    gone = weakref.ref(first)
    del first
    assert gone() is None
    next(batches)


def _corpus_specs(tmp_path):
    local = {"corpus": "local", "path": str(make_c4_dir(tmp_path / "c4")),
             "tokenizer": str(make_tokenizer_dir(tmp_path / "tokenizer"))}
    return {
        "markov": tiny_spec(),
        "local": tiny_spec(data=local),
        "local packed": tiny_spec(data={**local, "pack": True}),
        "glue": tiny_spec(workload="roberta_glue", data={"task": "synthetic-classification"}),
    }


@pytest.mark.parametrize("corpus", ["markov", "local", "local packed", "glue"])
def test_no_data_pipeline_tensor_and_no_batch_outlives_its_step(corpus, tmp_path):
    """The corpus's tables, the tokenizer's caches and the batches are gone from the breakdown at
    each tracked step's end: what is left in other is the model's buffers and the step's summed
    loss, which the loop reads after the step."""
    spec = _corpus_specs(tmp_path)[corpus]
    spec = replace(spec, steps=2, timing_warmup_steps=2, eval_batches=0)
    memory = train(spec, progress=False)[1]
    buffer_bytes = sum(buffer.nbytes for buffer in WORKLOADS[spec.workload].build_model(spec).buffers())
    assert memory.tracker_at_step_end_bytes["other"] == buffer_bytes + FLOAT32_BYTES
