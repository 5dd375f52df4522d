"""Each method trains a tiny model: the loss goes down and the right parameters move."""

import pytest
import torch

from methods import prepare_training
from tests.conftest import tiny_spec
from training.loop import train
from workloads import WORKLOADS


@pytest.mark.parametrize("method", ["full", "adam8bit", "lora", "low_rank"])
def test_method_reduces_loss(method):
    spec = tiny_spec(method=method, steps=30, lr=3e-3, batch_size=8, seq_len=32)
    curve = train(spec, progress=False)[0].loss_curve
    first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    assert last < first - 0.3, (first, last)


def test_lora_freezes_adapted_base_weights_and_trains_the_rest():
    spec = tiny_spec(method="lora", method_options={"rank": 4})
    torch.manual_seed(0)
    training = prepare_training(WORKLOADS["llama"].build_model(spec), spec, WORKLOADS[spec.workload])
    trainable = {name for name, p in training.model.named_parameters() if p.requires_grad}
    frozen = {name for name, p in training.model.named_parameters() if not p.requires_grad}
    assert frozen and all(".base_layer." in name for name in frozen)
    assert any("embed_tokens" in name for name in trainable)
    assert any("lm_head" in name for name in trainable)
    assert sum("lora_A" in name for name in trainable) == 2 * 7  # 2 layers x 7 Linear layers
    optimized = {id(p) for group in training.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in training.model.parameters() if p.requires_grad}


def test_lora_can_freeze_everything_but_the_adapters():
    spec = tiny_spec(method="lora", method_options={"rank": 4, "train_non_lora": False})
    training = prepare_training(WORKLOADS["llama"].build_model(spec), spec, WORKLOADS[spec.workload])
    trainable = [name for name, p in training.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def test_adam8bit_keeps_8bit_moments_for_large_tensors():
    spec = tiny_spec(method="adam8bit", steps=1)
    training = prepare_training(WORKLOADS["llama"].build_model(spec), spec, WORKLOADS[spec.workload])
    model = training.model
    batch = next(WORKLOADS["llama"].train_batches(spec))
    WORKLOADS["llama"].loss(model, batch).backward()
    training.optimizer.step()
    embedding_state = training.optimizer.state[model.model.embed_tokens.weight]
    assert embedding_state["state1"].dtype == torch.uint8
    assert embedding_state["state2"].dtype == torch.uint8


def test_schedule_warms_up_then_decays_to_a_tenth():
    spec = tiny_spec(steps=100, lr=1.0, warmup_fraction=0.1)
    training = prepare_training(WORKLOADS["llama"].build_model(spec), spec, WORKLOADS[spec.workload])
    rates = []
    for _ in range(100):
        rates.append(training.scheduler.get_last_lr()[0])
        training.optimizer.step()
        training.scheduler.step()
    assert rates[0] == 0.0 and rates[5] == pytest.approx(0.5) and rates[10] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))


def test_lora_adapters_take_the_models_dtype():
    """BF16 runs keep the adapters BF16 (peft would keep them float32 and save float32 inputs)."""
    spec = tiny_spec(method="lora", dtype="bfloat16")
    model = WORKLOADS["llama"].build_model(spec).to(torch.bfloat16)
    training = prepare_training(model, spec, WORKLOADS[spec.workload])
    adapters = [p for name, p in training.model.named_parameters() if "lora_" in name]
    assert adapters and all(p.dtype == torch.bfloat16 for p in adapters)
