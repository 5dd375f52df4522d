"""ReLoRA on a tiny LLaMA: resets raise the update's rank, pruning, the jagged lr, warm start."""

import math

import pytest
import torch
from peft.tuners.lora import LoraLayer

from core.spec import RunSpec
from methods import prepare_training
from methods.base import warmup_cosine_schedule
from methods.jagged_cosine import jagged_cosine_multiplier
from methods.relora import ReloraOptions, restart_steps
from tests.conftest import tiny_spec
from training.loop import optimizer_step
from workloads import WORKLOADS

RANK = 2


def relora_spec(steps: int, method="relora", **options) -> RunSpec:
    return tiny_spec(method=method, method_options=options, steps=steps, lr=3e-3)


def prepared(spec: RunSpec):
    torch.manual_seed(spec.seed)
    model = WORKLOADS[spec.workload].build_model(spec)
    return prepare_training(model, spec, WORKLOADS[spec.workload])


def run_steps(spec, training, steps: range, before_after_step=None):
    """Drive the training as train.train does; before_after_step(step) sees each step's result."""
    workload = WORKLOADS[spec.workload]
    batches = workload.train_batches(spec)
    for step in steps:
        optimizer_step(spec, workload, training, batches, torch.device("cpu"))
        training.scheduler.step()
        if before_after_step:
            before_after_step(step)
        if training.after_step:
            training.after_step(step)


def first_lora_layer(model) -> LoraLayer:
    return next(m for m in model.modules() if isinstance(m, LoraLayer))


@torch.no_grad()
def effective_weight(layer: LoraLayer) -> torch.Tensor:
    return layer.get_base_layer().weight + layer.get_delta_weight("default")


def update_rank(weight_now, weight_start) -> int:
    # rtol far above float32 rounding of W_0 + delta, far below the update's own singular values.
    return int(torch.linalg.matrix_rank((weight_now - weight_start).double(), rtol=1e-5))


@pytest.mark.parametrize("method, expect_rank_above_r", [("relora", True), ("lora", False)])
def test_resets_let_the_update_exceed_rank_r_which_plain_lora_cannot(method, expect_rank_above_r):
    options = dict(rank=RANK)
    if method == "relora":
        options |= dict(reset_interval=3, restart_warmup_steps=1)
    spec = relora_spec(12, method, **options)
    training = prepared(spec)
    layer = first_lora_layer(training.model)
    weight_start = effective_weight(layer).clone()

    run_steps(spec, training, range(spec.steps))

    rank = update_rank(effective_weight(layer), weight_start)
    assert rank > 0
    assert (rank > RANK) == expect_rank_above_r, f"{method}: rank of W_now - W_0 is {rank}, r is {RANK}"


def test_reset_merges_exactly_and_reinitialises_the_factors():
    spec = relora_spec(8, rank=RANK, reset_interval=4)
    training = prepared(spec)
    run_steps(spec, training, range(3))
    layer = first_lora_layer(training.model)
    batch = next(WORKLOADS["llama"].train_batches(spec))
    training.model.eval()  # no LoRA dropout, so outputs are comparable
    with torch.no_grad():
        logits_before = training.model(**batch).logits
        lora_a_before = layer.lora_A["default"].weight.clone()
        weight_before = effective_weight(layer)

    training.after_step(3)

    with torch.no_grad():
        torch.testing.assert_close(layer.get_base_layer().weight, weight_before)
        torch.testing.assert_close(training.model(**batch).logits, logits_before, rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
    assert not torch.equal(layer.lora_A["default"].weight, lora_a_before)


def moment_tensors(optimizer, parameter):
    return {k: v for k, v in optimizer.state[parameter].items() if k != "step"}


@pytest.mark.parametrize("state_pruning", ["magnitude", "reset"])
def test_reset_prunes_lora_moments_and_leaves_other_states_alone(state_pruning):
    ratio = 0.9
    spec = relora_spec(8, rank=RANK, reset_interval=4, state_pruning=state_pruning, pruning_ratio=ratio)
    training = prepared(spec)
    run_steps(spec, training, range(3))
    optimizer = training.optimizer
    named = dict(training.model.named_parameters())
    lora_parameters = [p for n, p in named.items() if "lora_" in n]
    other_parameters = [p for n, p in named.items() if "lora_" not in n and p in optimizer.state]
    assert lora_parameters and other_parameters
    # Distinct values, so "keep the entries above the quantile" has one right answer.
    generator = torch.Generator().manual_seed(0)
    for parameter in lora_parameters:
        for state in moment_tensors(optimizer, parameter).values():
            state.copy_(torch.randn(state.shape, generator=generator))
    lora_before = {id(p): {k: v.clone() for k, v in moment_tensors(optimizer, p).items()} for p in lora_parameters}
    other_before = {id(p): {k: v.clone() for k, v in optimizer.state[p].items()} for p in other_parameters}
    steps_before = [optimizer.state[p]["step"].clone() for p in lora_parameters]

    training.after_step(3)

    def top_entries(before):
        """The entries above the ratio-quantile of |before|: the ones magnitude pruning keeps."""
        threshold = before.abs().flatten().sort().values[int(ratio * before.numel()) - 1]
        return before.abs() > threshold

    for parameter in lora_parameters:
        first, second = optimizer.state[parameter]["exp_avg"], optimizer.state[parameter]["exp_avg_sq"]
        if state_pruning == "reset":
            assert not first.any() and not second.any()
            continue
        first_before, second_before = lora_before[id(parameter)]["exp_avg"], lora_before[id(parameter)]["exp_avg_sq"]
        assert int((second != 0).sum()) == second.numel() - int(ratio * second.numel())
        assert torch.equal(second != 0, top_entries(second_before))
        # The first moment survives only where the second does (else Adam would step by m / eps).
        assert torch.equal(first != 0, top_entries(first_before) & (second != 0))
        assert torch.equal(first[first != 0], first_before[first != 0])
        assert torch.equal(second[second != 0], second_before[second != 0])
    for parameter, step in zip(lora_parameters, steps_before):
        assert torch.equal(optimizer.state[parameter]["step"], step)
    for parameter in other_parameters:
        for key, state in optimizer.state[parameter].items():
            assert torch.equal(state, other_before[id(parameter)][key]), key


def test_restart_steps_follow_the_interval_and_the_warm_start():
    assert restart_steps(ReloraOptions(reset_interval=30), 100) == (30, 60, 90)
    assert restart_steps(ReloraOptions(reset_interval=30, warm_start_steps=20), 100) == (20, 50, 80)


def test_jagged_schedule_restarts_from_zero_and_rejoins_the_cosine():
    shape = dict(warmup_steps=10, total_steps=100, restart_steps=(30, 60), restart_warmup_steps=5)

    def cosine(step):
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - 10) / 90))

    assert jagged_cosine_multiplier(0, **shape) == 0
    assert jagged_cosine_multiplier(5, **shape) == pytest.approx(0.5)
    assert jagged_cosine_multiplier(10, **shape) == pytest.approx(1.0)  # global warm-up ends
    for restart in (30, 60):
        assert jagged_cosine_multiplier(restart - 1, **shape) == pytest.approx(cosine(restart - 1))
        assert jagged_cosine_multiplier(restart, **shape) == 0
        assert jagged_cosine_multiplier(restart + 2, **shape) == pytest.approx(cosine(restart + 2) * 2 / 5)
        assert jagged_cosine_multiplier(restart + 5, **shape) == pytest.approx(cosine(restart + 5))  # ramp ends
    assert jagged_cosine_multiplier(99, **shape) == pytest.approx(cosine(99))


def test_relora_lr_equals_the_plain_schedule_outside_restart_ramps():
    spec = relora_spec(40, rank=RANK, reset_interval=10, restart_warmup_steps=3)
    training = prepared(spec)
    plain_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=spec.lr)
    plain = warmup_cosine_schedule(plain_optimizer, spec)
    for step in range(spec.steps):
        lr, plain_lr = training.optimizer.param_groups[0]["lr"], plain_optimizer.param_groups[0]["lr"]
        since_restart = step % 10
        if step >= 10 and since_restart < 3:
            assert lr == pytest.approx(plain_lr * since_restart / 3), step
        else:
            assert lr == pytest.approx(plain_lr), step
        training.optimizer.step()
        training.scheduler.step()
        plain_optimizer.step()
        plain.step()


def test_warm_start_trains_full_rank_then_relora_continues_from_those_weights():
    warm_start = 3
    spec = relora_spec(8, rank=RANK, reset_interval=10, restart_warmup_steps=1, warm_start_steps=warm_start)
    training = prepared(spec)
    model, optimizer = training.model, training.optimizer
    layer = first_lora_layer(model)
    base_weight = layer.get_base_layer().weight
    base_at_init = base_weight.detach().clone()
    lora_b = layer.lora_B["default"].weight
    snapshots = {}

    def snapshot(step):
        if step == warm_start - 1:  # the last full-rank step, before the switch
            snapshots["full_rank_trained"] = base_weight.detach().clone()
            assert lora_b not in optimizer.state and torch.count_nonzero(lora_b) == 0

    run_steps(spec, training, range(warm_start), snapshot)

    full_rank_trained = snapshots["full_rank_trained"]
    assert not torch.equal(full_rank_trained, base_at_init)
    assert not base_weight.requires_grad and base_weight not in optimizer.state
    assert lora_b.requires_grad and not layer.disable_adapters
    torch.testing.assert_close(effective_weight(layer), full_rank_trained, rtol=0, atol=0)

    run_steps(spec, training, range(warm_start, warm_start + 2))  # the switch is a restart: lr 0, then a real LoRA step

    assert torch.equal(base_weight, full_rank_trained)
    assert torch.count_nonzero(lora_b) > 0


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(state_pruning="random"), "state_pruning 'random' is not known; accepted: magnitude, reset"),
        (dict(reset_interval=0), "reset_interval must be >= 1"),
        (dict(pruning_ratio=1.5), "pruning_ratio must be in [0, 1]"),
        (dict(warm_start_steps=-1), "warm_start_steps must be >= 0"),
        (dict(warm_start_steps=12), "warm_start_steps (12) must be below steps (12)"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError) as error:
        prepared(relora_spec(12, **options))
    assert message in str(error.value)
