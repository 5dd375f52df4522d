"""DoRA, PiSSA and QLoRA (peft, bitsandbytes): each trains the tiny LLaMA (the loss falls) and
keeps exactly AdamW's two moments over what it trains; PiSSA starts where the un-adapted model
is; QLoRA's frozen weights are NF4's packed bytes and constants, by their formula."""

import copy
import math

import pytest
import torch

from core.options import OptionError
from methods import METHODS, prepare_training
from methods.qlora import NF4_BLOCK_SIZE
from tests.conftest import tiny_spec
from tests.methods.test_successors import FLOAT32_BYTES, assert_loss_falls
from training.loop import train
from workloads import WORKLOADS

LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""LLaMA's attention and MLP Linears: what the methods place themselves on by default."""

RANK = 8
WORKLOAD = WORKLOADS["llama"]


def trained(method: str, options: dict):
    """The loss curve and memory figures of 30 steps, and the model's (untrained) Linear shapes."""
    spec = tiny_spec(method=method, method_options={"rank": RANK, **options}, steps=30, lr=3e-3, batch_size=8,
                     seq_len=32)
    metrics, memory = train(spec, progress=False)
    assert memory.tracker_at_step_end_bytes["optimizer_state"] == memory.optimizer_state_bytes
    return metrics.loss_curve, memory, WORKLOAD.build_model(spec)


def adapted_shapes_and_plain_numels(model):
    """(out, in) of every Linear LoRA adapts, and the numel of every other parameter (trained
    too, train_non_lora being on by default)."""
    adapted = {name: module for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in LLAMA_LINEARS}
    adapted_ids = {id(module.weight) for module in adapted.values()}
    plain = [p.numel() for p in model.parameters() if id(p) not in adapted_ids]
    return [tuple(module.weight.shape) for module in adapted.values()], plain


def lora_state_bytes(model, rank: int, magnitude: bool = False) -> int:
    """AdamW's two float32 moments over A (r x in) and B (out x r) of each adapted Linear, DoRA's
    magnitude (one per output feature) where `magnitude`, and every other parameter. torch's
    AdamW adds its step count, a float32 tensor per parameter."""
    shapes, plain = adapted_shapes_and_plain_numels(model)
    trained_elements = sum(rank * (out + in_) + (out if magnitude else 0) for out, in_ in shapes) + sum(plain)
    trained_tensors = len(shapes) * (3 if magnitude else 2) + len(plain)
    return (2 * trained_elements + trained_tensors) * FLOAT32_BYTES


def test_dora_trains_and_keeps_loras_state_plus_a_magnitude_per_output_feature(one_thread):
    curve, memory, model = trained("dora", {})
    assert_loss_falls(curve)
    assert memory.optimizer_state_bytes == lora_state_bytes(model, RANK, magnitude=True)


@pytest.mark.parametrize("init", ["pissa", "pissa_niter_4"])
def test_pissa_trains_and_keeps_loras_state_at_equal_rank(init, one_thread):
    curve, memory, model = trained("pissa", {"init": init})
    assert_loss_falls(curve)
    assert memory.optimizer_state_bytes == lora_state_bytes(model, RANK)
    _, lora_memory, _ = trained("lora", {})
    assert memory.optimizer_state_bytes == lora_memory.optimizer_state_bytes


@pytest.mark.parametrize("init", ["pissa", "pissa_niter_4"])
def test_pissa_starts_where_the_unadapted_model_is(init):
    spec = tiny_spec(method="pissa", method_options={"rank": RANK, "init": init})
    torch.manual_seed(spec.seed)
    model = WORKLOAD.build_model(spec).eval()
    batch = torch.randint(0, model.config.vocab_size, (2, 16))
    with torch.no_grad():
        before = model(batch).logits
    weight = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    adapted = prepare_training(copy.deepcopy(model), spec, WORKLOAD).model.eval()  # eval: dropout off
    with torch.no_grad():
        after = adapted(batch).logits
    layer = adapted.base_model.model.model.layers[0].self_attn.q_proj
    # W_res = W - s B A: the base weight holds the residual, the adapters the principal part.
    assert not torch.allclose(layer.base_layer.weight, weight, atol=1e-3)
    principal = layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    torch.testing.assert_close(layer.base_layer.weight + principal, weight)
    torch.testing.assert_close(after, before)  # float32 rounding (rtol 1.3e-6, atol 1e-5)


def test_a_pissa_init_peft_does_not_know_is_refused_naming_the_option():
    with pytest.raises(OptionError, match=r'options.init = .pissa_niter_0.; accepted: "pissa" or "pissa_niter_<k>"'):
        METHODS["pissa"].parse_options({"init": "pissa_niter_0"})


def nf4_bytes(shape: tuple[int, int], double_quant: bool) -> int:
    """A weight in NF4 (the QLoRA paper): two 4-bit codes per byte and an absmax per 64-element
    block, float32, or with double quantization 8-bit with a float32 scale per 256 absmax values
    and their float32 mean (offset). bitsandbytes adds the 16 float32 NF4 code values per weight,
    and with double quantization its 256-value float32 8-bit map per weight."""
    numel = shape[0] * shape[1]
    blocks = math.ceil(numel / NF4_BLOCK_SIZE)
    nf4_code = 16 * FLOAT32_BYTES
    if not double_quant:
        return numel // 2 + blocks * FLOAT32_BYTES + nf4_code
    nested = math.ceil(blocks / 256) * FLOAT32_BYTES + FLOAT32_BYTES + 256 * FLOAT32_BYTES
    return numel // 2 + blocks + nested + nf4_code


@pytest.mark.parametrize("double_quant", [True, False])
def test_qlora_trains_over_nf4_weights_and_counts_their_packed_bytes_and_constants(double_quant, one_thread):
    curve, memory, model = trained("qlora", {"double_quant": double_quant})
    assert_loss_falls(curve)
    assert memory.optimizer_state_bytes == lora_state_bytes(model, RANK)
    shapes, _ = adapted_shapes_and_plain_numels(model)
    frozen = sum(nf4_bytes(shape, double_quant) for shape in shapes)  # all else trains (train_non_lora)
    assert memory.frozen_weight_bytes == memory.tracker_at_step_end_bytes["frozen_weights"] == frozen


def test_qlora_keeps_embeddings_norms_and_head_in_the_specs_dtype():
    spec = tiny_spec(method="qlora", method_options={"rank": RANK})
    torch.manual_seed(spec.seed)
    adapted = prepare_training(WORKLOAD.build_model(spec), spec, WORKLOAD).model
    quantized = [name for name, p in adapted.named_parameters() if p.dtype == torch.uint8]
    assert quantized and all(".base_layer." in name for name in quantized)
    kept = [name for name, p in adapted.named_parameters() if p.dtype == torch.float32 and "lora_" not in name]
    assert any("embed_tokens" in name for name in kept) and any("norm" in name for name in kept)
    assert any("lm_head" in name for name in kept)


@pytest.mark.parametrize("double_quant", [True, False])
def test_qloras_traced_estimate_counts_the_nf4_storage_by_the_formula(double_quant):
    from estimates.traced import traced_steps

    spec = tiny_spec(method="qlora", method_options={"rank": RANK, "double_quant": double_quant}, steps=2)
    steps, notes = traced_steps(spec, steps=2, as_cuda=False)
    shapes, _ = adapted_shapes_and_plain_numels(WORKLOAD.build_model(spec))
    frozen = sum(nf4_bytes(shape, double_quant) for shape in shapes)
    assert [step.at_step_end_bytes["frozen_weights"] for step in steps] == [frozen, frozen]
    assert any("Params4bit" in note for note in notes)
