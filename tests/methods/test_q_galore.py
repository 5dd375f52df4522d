"""Q-GaLore (methods/q_galore.py): its quantization is the reference's (asymmetric, group-wise)
with unbiased stochastic rounding, its projectors are stored as packed INT4, a layer whose
gradient subspace stays put refreshes ever less often while one that moves keeps refreshing,
and on the tiny LLaMA the loss falls and every byte stored is the formula's."""

import pytest
import torch

from methods.groupwise_quantization import dequantize, group_count, pack_int4, quantize, unpack_int4
from methods.int8_linear import Int8Linear
from methods.q_galore import QGaLoreAdamW8bit, QGaLoreOptions
from tests.conftest import tiny_spec
from tests.methods.test_successors import assert_loss_falls, projected_and_plain_shapes
from training.loop import train
from workloads import WORKLOADS

RANK = 8
GROUP = 256
BITSANDBYTES_8BIT_MIN = 4096
"""bitsandbytes keeps 32-bit moments for tensors under this many elements."""
BITSANDBYTES_BLOCK = 256
QUANTIZATION_MAPS_BYTES = 2 * 256 * 4
"""bitsandbytes' signed and unsigned dynamic maps, float32, shared by every 8-bit state (counted once)."""


def test_quantization_inverts_to_within_half_a_level_with_the_references_zero_points():
    values = torch.randn(3, 200) * 0.02
    codes, scales, zeros = quantize(values, 8, GROUP, torch.float32)
    assert codes.dtype == torch.uint8 and codes.shape == values.shape
    assert scales.shape == zeros.shape == (group_count(600, GROUP), 1)  # 3 groups, the last padded
    assert torch.equal(zeros, zeros.round()) and zeros.min() >= 0 and zeros.max() <= 255
    error = (dequantize(codes, scales, zeros, GROUP, torch.float32) - values).abs().reshape(-1)
    per_element_scale = torch.repeat_interleave(scales.reshape(-1), GROUP)[:600]
    assert (error <= per_element_scale / 2 + 1e-7).all()


def test_stochastic_rounding_is_unbiased_and_rounding_to_nearest_is_not():
    # A group spanning [0, 255 s] with s = 1e-3: levels are multiples of s. The value 100.3 s
    # sits between two levels; stochastic rounding's mean over many draws must be it.
    scale = 1e-3
    trials = 20_000
    group = torch.full((trials, GROUP), 100.3 * scale)
    group[:, 0], group[:, 1] = 0.0, 255 * scale
    generator = torch.Generator().manual_seed(0)
    codes, scales, zeros = quantize(group, 8, GROUP, torch.float32, generator)
    stochastic = dequantize(codes, scales, zeros, GROUP, torch.float32)[:, 2:]
    nearest = dequantize(*quantize(group, 8, GROUP, torch.float32), GROUP, torch.float32)[:, 2:]
    assert set(stochastic.unique().div(scale).round().tolist()) == {100.0, 101.0}
    assert stochastic.double().mean().item() == pytest.approx(100.3 * scale, abs=0.01 * scale)
    assert nearest.double().mean().item() == pytest.approx(100.0 * scale, abs=1e-6)  # biased by 0.3 s, every time


def test_int4_projector_codes_pack_two_to_a_byte_and_unpack_exactly():
    codes, _, _ = quantize(torch.randn(7, 5), 4, GROUP, torch.float32)
    assert codes.max() <= 15
    packed = pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.numel() == 18  # ceil(35 / 2)
    assert torch.equal(unpack_int4(packed, (7, 5)), codes)


def test_an_int8_linear_computes_with_its_dequantized_weight_and_accumulates_its_gradient():
    linear = torch.nn.Linear(64, 32)
    layer = Int8Linear(linear, GROUP)
    x = torch.randn(5, 64, requires_grad=True)
    weight = layer.dequantized(torch.float32)
    assert (weight - linear.weight).abs().max() <= layer.weight_scales.max() / 2 + 1e-7
    for _ in range(2):  # two micro-batches
        layer(x).square().sum().backward()
    reference = weight.detach().requires_grad_()
    for _ in range(2):
        torch.nn.functional.linear(x, reference, linear.bias).square().sum().backward()
    torch.testing.assert_close(layer.weight.float_grad, reference.grad)


def _optimizer_of(weights: dict[str, torch.Tensor], **options) -> tuple[QGaLoreAdamW8bit, dict]:
    settings = QGaLoreOptions(**options)
    layers = {name: Int8Linear(torch.nn.Linear(w.shape[1], w.shape[0], bias=False), GROUP) for name, w in weights.items()}
    group = {"params": [layer.weight for layer in layers.values()], "rank": settings.rank, **{
        name: getattr(settings, name) for name in ("update_proj_gap", "scale", "proj_type", "projector_group_size",
                                                   "stochastic_round", "cos_threshold", "gamma_proj", "queue_size")}}
    return QGaLoreAdamW8bit([group], list(layers.values()), lr=1e-3, weight_decay=0.0, seed=0), layers


def test_a_layer_whose_subspace_stays_put_refreshes_ever_less_often_and_one_that_moves_keeps_refreshing():
    torch.manual_seed(0)
    rows, columns, rank, steps, gap = 64, 32, 4, 60, 2
    # The settled layer's gradient is U diag(s_t) Vᵀ with U and V fixed: its subspace never
    # moves. (Both sides fixed: the reference's cosine is signed, and singular vectors are
    # only defined up to sign, so a gradient that mixes its fixed right subspace with fresh
    # left factors each step can get SVD vectors of either sign, cosine -1, and keep
    # refreshing: the reference behaves so, and so do we.)
    left_basis = torch.linalg.qr(torch.randn(rows, rank))[0]
    right_basis = torch.linalg.qr(torch.randn(columns, rank))[0]
    optimizer, layers = _optimizer_of({"settled": torch.empty(rows, columns), "moving": torch.empty(rows, columns)},
                                      rank=rank, update_proj_gap=gap, queue_size=3)
    refreshes = {name: [] for name in layers}
    for step in range(steps):
        strengths = torch.linspace(4.0, 1.0, rank) * (1 + 0.1 * torch.rand(rank))
        gradients = {"settled": left_basis * strengths @ right_basis.T + 1e-3 * torch.randn(rows, columns),
                     "moving": torch.randn(rows, columns)}  # a fresh random subspace every step
        counts = {}
        for name, layer in layers.items():
            layer.weight.float_grad = gradients[name]
            counts[name] = optimizer.state[layer.weight].get("svd_count", 0)
        optimizer.step()
        optimizer.zero_grad()
        for name, layer in layers.items():
            if optimizer.state[layer.weight]["svd_count"] > counts[name]:
                refreshes[name].append(step)
    settled, moving = (optimizer.state[layers[name].weight]["update_proj_gap"] for name in ("settled", "moving"))
    assert moving == gap and refreshes["moving"] == list(range(0, steps, gap))
    # The queue of 3 cosines is full at the fourth refresh (step 6): T doubles there and, the
    # queue not being cleared, at every refresh after.
    assert settled == gap * 2**4 and refreshes["settled"] == [0, 2, 4, 6, 8, 16, 32]
    assert sorted(optimizer.refreshed_at) == refreshes["moving"]


def trained(options: dict, lr: float = 1e-2):
    spec = tiny_spec(method="q_galore", method_options=options, steps=30, lr=lr, batch_size=8, seq_len=32,
                     timing_warmup_steps=2)
    metrics, memory = train(spec, progress=False)
    assert memory.tracker_at_step_end_bytes["optimizer_state"] == memory.optimizer_state_bytes
    return metrics.loss_curve, memory, WORKLOADS["llama"].build_model(spec)


def adam8bit_moment_bytes(numel: int) -> int:
    """bitsandbytes' two blockwise 8-bit moments (a byte each, a float32 absmax per 256), or two
    float32 moments under 4096 elements; the quantization maps are counted once, apart."""
    if numel < BITSANDBYTES_8BIT_MIN:
        return 2 * numel * 4
    return 2 * numel + 2 * -(-numel // BITSANDBYTES_BLOCK) * 4


def q_galore_state_bytes(model, rank: int) -> int:
    """Q-GaLore's state per projected m x n weight (std projects the smaller side): 8-bit Adam
    moments at the projected r x max(m, n) shape; the r x min(m, n) projector as packed INT4
    (half a byte per element) plus a float32 scale and zero point per 256 elements; and, as
    the reference keeps it for the lazy refresh, the last projector's first singular vector
    (min(m, n) float32 values). Every other weight: the same 8-bit Adam at its own shape. Plus
    bitsandbytes' two quantization maps, once."""
    projected, plain = projected_and_plain_shapes(model)
    total = QUANTIZATION_MAPS_BYTES
    for m, n in projected:
        projector = rank * min(m, n)
        total += adam8bit_moment_bytes(rank * max(m, n))
        total += -(-projector // 2) + 2 * group_count(projector, GROUP) * 4 + min(m, n) * 4
    return total + sum(adam8bit_moment_bytes(numel) for numel in plain)


def test_q_galore_trains_the_tiny_llama_and_stores_what_the_formula_says(one_thread):
    curve, memory, model = trained({"rank": RANK, "update_proj_gap": 5})
    assert_loss_falls(curve)
    assert memory.optimizer_state_bytes == q_galore_state_bytes(model, RANK)
    projected, plain = projected_and_plain_shapes(model)
    # INT8 codes, a byte each, and a float32 scale and zero point per 256 elements.
    assert memory.frozen_weight_bytes == sum(m * n + 2 * group_count(m * n, GROUP) * 4 for m, n in projected)
    assert memory.trainable_weight_bytes == sum(plain) * 4
    assert memory.tracker_at_step_end_bytes["frozen_weights"] == memory.frozen_weight_bytes
    # Tracked steps 0 (every projector computed) and 1 (none): is_refresh_step tells them apart.
    assert memory.tracker_refresh_peak_bytes is not None and memory.tracker_steady_peak_bytes is not None


def test_a_grad_clip_is_refused_in_one_line():
    from methods import METHODS

    spec = tiny_spec(method="q_galore", grad_clip=1.0)
    with pytest.raises(ValueError, match="grad_clip = 1.0 cannot be honoured") as error:
        METHODS["q_galore"].prepare(WORKLOADS["llama"].build_model(spec), spec, QGaLoreOptions(), WORKLOADS["llama"])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("values, message", [
    ({"proj_type": "full"}, "options.proj_type 'full' is not known"),
    ({"weight_group_size": 0}, "options.weight_group_size = 0"),
    ({"cos_threshold": 1.5}, "options.cos_threshold = 1.5"),
    ({"queue_size": 0}, "options.queue_size = 0"),
])
def test_out_of_range_options_are_refused_naming_the_field(values, message):
    from methods import METHODS

    with pytest.raises(ValueError, match=message):
        METHODS["q_galore"].parse_options(values)
