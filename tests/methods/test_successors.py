"""The methods that came after GaLore: each trains the tiny LLaMA (the loss falls) and keeps
exactly the optimizer state its paper's formula gives, plus what its package adds (named)."""

import pytest
import torch

from tests.conftest import tiny_spec
from training.loop import train
from workloads import WORKLOADS

LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""LLaMA's attention and MLP Linears: what the methods place themselves on by default."""

FLOAT32_BYTES = 4
RANK = 8


def trained(method: str, options: dict, lr: float = 3e-3):
    """The loss curve and optimizer state bytes of 30 steps, and the model's (untrained) shapes.
    The tracker must see the same state bytes at the end of its tracked steps."""
    spec = tiny_spec(method=method, method_options=options, steps=30, lr=lr, batch_size=8, seq_len=32)
    metrics, memory = train(spec, progress=False)
    assert memory.tracker_at_step_end_bytes["optimizer_state"] == memory.optimizer_state_bytes
    return metrics.loss_curve, memory.optimizer_state_bytes, WORKLOADS["llama"].build_model(spec)


def assert_loss_falls(curve):
    first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    assert last < first - 0.3, (first, last)


def projected_and_plain_shapes(model):
    targets = LLAMA_LINEARS
    projected = [m.weight.shape for name, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and name.split(".")[-1] in targets]
    projected_ids = {id(m.weight) for name, m in model.named_modules()
                     if isinstance(m, torch.nn.Linear) and name.split(".")[-1] in targets}
    plain = [p.numel() for p in model.parameters() if id(p) not in projected_ids]
    return projected, plain


def apollo_state_elements(model, rank: int) -> int:
    """APOLLO's paper: AdamW moments at the projected shape, 2 r max(m, n) per weight m x n
    (std projects the smaller side); plain AdamW (2 per element) elsewhere. apollo-torch also
    keeps the r x min(m, n) projection (the paper regenerates it from the seed) and a
    norm-growth-limiter scalar per weight."""
    projected, plain = projected_and_plain_shapes(model)
    moments = sum(2 * rank * max(m, n) for m, n in projected)
    projections = sum(rank * min(m, n) for m, n in projected)
    limiters = len(projected)
    return moments + projections + limiters + sum(2 * n for n in plain)


@pytest.mark.parametrize("method", ["apollo", "apollo_layerwise"])
def test_apollo_trains_and_keeps_the_papers_state_plus_the_projection(method, one_thread):
    curve, state_bytes, model = trained(method, {"rank": RANK, "update_proj_gap": 10}, lr=1e-2)
    assert_loss_falls(curve)
    assert state_bytes == apollo_state_elements(model, RANK) * FLOAT32_BYTES


def test_apollo_mini_is_rank_one(one_thread):
    curve, state_bytes, model = trained("apollo_mini", {"update_proj_gap": 10}, lr=1e-2)
    assert_loss_falls(curve)
    assert state_bytes == apollo_state_elements(model, 1) * FLOAT32_BYTES


def adam_mini_state_elements(model) -> int:
    """Adam-mini's paper: a full-size first moment; one second-moment value per query/key head,
    per output neuron (row) of embeddings, values, attention output, MLP and LM head, and per
    norm weight (the tiny LLaMA has no biases)."""
    config = model.config
    head_numel = config.hidden_size * config.hidden_size // config.num_attention_heads
    second = 0
    for name, p in model.named_parameters():
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            second += p.numel() // head_numel
        elif "norm" in name:
            second += 1
        else:
            second += p.shape[0]
    return sum(p.numel() for p in model.parameters()) + second


def test_adam_mini_trains_and_keeps_one_second_moment_per_block(one_thread):
    curve, state_bytes, model = trained("adam_mini", {})
    assert_loss_falls(curve)
    assert state_bytes == adam_mini_state_elements(model) * FLOAT32_BYTES


def fira_state_elements(model, rank: int) -> int:
    """Fira's paper: GaLore's state, 2 r max(m, n) moments per weight m x n and an r x min(m, n)
    projector, plus a norm-growth-limiter scalar. With float32 weights the fira package's
    projector is a slice of the SVD factor, so the whole min(m, n) x min(m, n) factor stays
    allocated instead (with BF16 weights its cast makes a compact copy)."""
    projected, plain = projected_and_plain_shapes(model)
    moments = sum(2 * rank * max(m, n) for m, n in projected)
    svd_factors = sum(min(m, n) ** 2 for m, n in projected)
    limiters = len(projected)
    return moments + svd_factors + limiters + sum(2 * n for n in plain)


def test_fira_trains_and_keeps_galores_state_with_whole_svd_factors(one_thread):
    curve, state_bytes, model = trained("fira", {"rank": RANK, "update_proj_gap": 10, "alpha": 0.25}, lr=1e-2)
    assert_loss_falls(curve)
    assert state_bytes == fira_state_elements(model, RANK) * FLOAT32_BYTES


def torchao_state_bytes(model, bits: int, block_size: int) -> int:
    """Blockwise-quantized moments (the 8-bit Adam paper's convention): bits/8 bytes per
    element and a float32 scale per block, for tensors of at least 4096 elements that split
    into whole blocks; float32 moments otherwise. torchao also keeps a quantization map per
    moment (2^bits float32 values) and a float32 step per parameter."""
    total = 0
    for p in model.parameters():
        n = p.numel()
        quantized = n >= 4096 and n % block_size == 0
        moment = n * bits // 8 + n // block_size * 4 + 2**bits * 4 if quantized else n * 4
        total += 2 * moment + 4
    return total


@pytest.mark.slow
@pytest.mark.parametrize("method, bits, block_size", [("torchao_adamw8bit", 8, 256), ("torchao_adamw4bit", 4, 128)])
def test_torchao_lowbit_trains_and_keeps_blockwise_quantized_moments(method, bits, block_size, one_thread):
    curve, state_bytes, model = trained(method, {})
    assert_loss_falls(curve)
    assert state_bytes == torchao_state_bytes(model, bits, block_size)
