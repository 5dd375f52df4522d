"""GaLore optimizers: faithful to galore-torch, projector shapes and refresh, 8-bit state, state_dict."""

import copy
import io
import math

import pytest
import torch
from galore_torch import GaLoreAdamW as ReferenceGaLoreAdamW
from galore_torch import GaLoreAdamW8bit as ReferenceGaLoreAdamW8bit
from galore_torch.galore_projector import GaLoreProjector

from meters.tracker import MemoryTracker
from methods import prepare_training
from methods.galore import GALORE, param_groups
from methods.galore_adamw import GaLoreAdamW
from methods.galore_adamw8bit import BLOCK_SIZE, GaLoreAdamW8bit
from methods.galore_projector import add_projected_back, project, refresh_projector
from tests.conftest import tiny_spec
from workloads import WORKLOADS

GALORE_SETTINGS = {"rank": 8, "update_proj_gap": 3, "scale": 0.25}


def galore_groups(model, spec) -> list[dict]:
    """The plain and the GaLore parameter group of a tiny LLaMA, as the galore method builds them."""
    return param_groups(model, spec, GALORE.parse_options(spec.method_options), WORKLOADS["llama"])


def tiny_model_and_batches(spec, steps):
    torch.manual_seed(0)
    model = WORKLOADS["llama"].build_model(spec)
    batches = WORKLOADS["llama"].train_batches(spec)
    return model, [next(batches) for _ in range(steps)]


def same_gradient_history(model, optimizer, reference_model, reference, batches):
    """Train the reference on the batches, giving our optimizer the same gradients each step,
    and return both models' parameters after each step.

    Both see the reference's gradients because a projector refresh takes singular vectors, and
    those within near-equal singular values turn with any last-bit difference in the gradient;
    the same gradients leave only the optimizers' own arithmetic to compare.
    """
    history = []
    for batch in batches:
        WORKLOADS["llama"].loss(reference_model, batch).backward()
        for p, reference_p in zip(model.parameters(), reference_model.parameters()):
            p.grad = reference_p.grad.clone()
        optimizer.step()
        reference.step()
        optimizer.zero_grad(set_to_none=True)
        reference.zero_grad(set_to_none=True)
        history.append([(p.detach().clone(), r.detach().clone()) for p, r in zip(model.parameters(), reference_model.parameters())])
    return history


def assert_same_history(history, rtol, atol):
    for step, pairs in enumerate(history):
        for ours, reference in pairs:
            torch.testing.assert_close(ours, reference, rtol=rtol, atol=atol, msg=lambda m: f"step {step}: {m}")


@pytest.mark.parametrize("proj_type", ["std", "reverse_std", "full"])
def test_matches_galore_torch_step_for_step_across_projector_refreshes(proj_type):
    # 7 steps with T = 3: projectors are recomputed at steps 0, 3 and 6.
    spec = tiny_spec(
        method="galore", batch_size=2, seq_len=16, weight_decay=0.1,
        method_options={**GALORE_SETTINGS, "proj_type": proj_type},
    )  # fmt: skip
    model, batches = tiny_model_and_batches(spec, steps=7)
    reference_model = copy.deepcopy(model)
    ours = GaLoreAdamW(galore_groups(model, spec), lr=1e-2, weight_decay=0.1)
    reference = ReferenceGaLoreAdamW(
        galore_groups(reference_model, spec), lr=1e-2, weight_decay=0.1, no_deprecation_warning=True
    )
    assert_same_history(same_gradient_history(model, ours, reference_model, reference, batches), rtol=1e-5, atol=1e-6)


def test_8bit_matches_galore_torch_8bit_with_its_cuda_sync_stubbed(monkeypatch):
    # galore-torch's AdamW8bit calls torch.cuda.synchronize(), which fails on a CPU-only build.
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)
    # Rank 32: the MLP's low-rank moments (172 x 32) get 8-bit state, attention's (64 x 32) 32-bit.
    settings = {**GALORE_SETTINGS, "rank": 32}
    spec = tiny_spec(method="galore8bit", batch_size=2, seq_len=16, weight_decay=0.1, method_options=settings)
    model, batches = tiny_model_and_batches(spec, steps=5)
    reference_model = copy.deepcopy(model)
    ours = GaLoreAdamW8bit(galore_groups(model, spec), lr=1e-2, weight_decay=0.1)
    reference = ReferenceGaLoreAdamW8bit(galore_groups(reference_model, spec), lr=1e-2, weight_decay=0.1)
    # galore-torch 1.0 passes percentile_clipping=100 and block_wise=True positionally, which
    # bitsandbytes 0.50 reads as max_unorm and skip_zeros; max_unorm > 0 then scales to zero the
    # update of every projected weight with 32-bit state (its stand-in parameter is all zeros).
    assert (reference.args.max_unorm, reference.args.skip_zeros) == (100, True)
    reference.args.max_unorm, reference.args.skip_zeros = 0.0, False
    history = same_gradient_history(model, ours, reference_model, reference, batches)
    assert_same_history(history, rtol=1e-5, atol=1e-6)


SHAPES = {"tall": (32, 16), "wide": (16, 32), "square": (24, 24)}
RANK = 4
EXPECTED_LOW_RANK_SHAPES = {
    # proj_type: {shape name: shape of the projected gradient}
    "std": {"tall": (32, RANK), "wide": (RANK, 32), "square": (24, RANK)},
    "reverse_std": {"tall": (RANK, 16), "wide": (16, RANK), "square": (RANK, 24)},
    "left": {"tall": (RANK, 16), "wide": (RANK, 32), "square": (RANK, 24)},
    "right": {"tall": (32, RANK), "wide": (16, RANK), "square": (24, RANK)},
    "full": {"tall": (RANK, RANK), "wide": (RANK, RANK), "square": (RANK, RANK)},
}


@pytest.mark.parametrize("proj_type", list(EXPECTED_LOW_RANK_SHAPES))
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_projection_shapes_and_values_match_galore_torch(proj_type, shape_name):
    grad = torch.randn(SHAPES[shape_name], generator=torch.Generator().manual_seed(1))
    state = {}
    refresh_projector(state, grad, RANK, proj_type)
    low_rank = project(state, grad)
    assert tuple(low_rank.shape) == EXPECTED_LOW_RANK_SHAPES[proj_type][shape_name]

    reference = GaLoreProjector(RANK, update_proj_gap=200, scale=0.25, proj_type=proj_type)
    torch.testing.assert_close(low_rank, reference.project(grad, 0))
    back = torch.zeros_like(grad)
    add_projected_back(back, state, low_rank, alpha=0.25)
    torch.testing.assert_close(back, reference.project_back(low_rank))


@pytest.mark.parametrize("optimizer_class", [GaLoreAdamW, GaLoreAdamW8bit])
def test_projector_is_recomputed_exactly_at_multiples_of_the_gap(optimizer_class):
    gap, steps = 3, 8
    weight = torch.nn.Parameter(torch.randn(64, 96))
    optimizer = optimizer_class([{"params": [weight], "rank": 4, "update_proj_gap": gap, "scale": 0.25, "proj_type": "std"}])
    generator = torch.Generator().manual_seed(2)
    grads = [torch.randn(64, 96, generator=generator) for _ in range(steps)]
    for step, grad in enumerate(grads):
        weight.grad = grad
        optimizer.step()
        expected = {}
        refresh_projector(expected, grads[step - step % gap], 4, "std")
        # Exactly the SVD of the gradient of the last multiple of the gap, no other.
        assert torch.equal(optimizer.state[weight]["projector_left"], expected["projector_left"]), step
    assert optimizer.state[weight]["step"] == steps


def test_8bit_state_is_uint8_with_the_bytes_of_the_formula():
    rank = 32
    projected_8bit = torch.nn.Parameter(torch.randn(256, 128))  # low-rank 256 x 32 = 8192 >= 4096: 8-bit
    projected_32bit = torch.nn.Parameter(torch.randn(100, 64))  # low-rank 100 x 32 = 3200 < 4096: 32-bit
    plain_8bit = torch.nn.Parameter(torch.randn(4100))  # 4100 elements: 17 blocks, the last partial
    optimizer = GaLoreAdamW8bit([
        {"params": [plain_8bit]},
        {"params": [projected_8bit, projected_32bit], "rank": rank, "update_proj_gap": 200, "scale": 0.25,
         "proj_type": "std"},
    ])  # fmt: skip
    for p in (projected_8bit, projected_32bit, plain_8bit):
        p.grad = torch.randn_like(p)
    optimizer.step()

    def moment_bytes_8bit(elements):  # codes + one float32 absmax per 256-element block, per moment
        return 2 * (elements + 4 * math.ceil(elements / BLOCK_SIZE))

    for p, elements in ((projected_8bit, 256 * rank), (plain_8bit, 4100)):
        state = optimizer.state[p]
        assert state["state1"].dtype == state["state2"].dtype == torch.uint8
        assert state["state1"].numel() == elements
        moment_tensors = [state[k] for k in ("state1", "state2", "absmax1", "absmax2")]
        assert sum(t.numel() * t.element_size() for t in moment_tensors) == moment_bytes_8bit(elements)
        assert state["qmap1"].dtype == torch.float32 and state["qmap1"].numel() == 256
    small = optimizer.state[projected_32bit]
    assert small["state1"].dtype == torch.float32 and small["state1"].shape == (100, rank)
    # The quantization maps are shared by all parameters, not copied per parameter.
    assert optimizer.state[projected_8bit]["qmap1"] is optimizer.state[plain_8bit]["qmap1"]


@pytest.mark.parametrize("method", ["galore", "galore8bit", "galore8bit_layerwise", "adam8bit_layerwise"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_dict_round_trips_through_weights_only_load(method, dtype):
    options = {"rank": 8, "update_proj_gap": 2} if method.startswith("galore") else {}
    spec = tiny_spec(method=method, batch_size=2, seq_len=16, method_options=options)
    model, batches = tiny_model_and_batches(spec, steps=3)
    model.to(dtype)
    resumed_model = copy.deepcopy(model)
    training = prepare_training(model, spec, WORKLOADS[spec.workload])
    resumed = prepare_training(resumed_model, spec, WORKLOADS[spec.workload])

    def step(training, batch):
        WORKLOADS["llama"].loss(training.model, batch).backward()
        if not training.steps_in_backward:
            training.optimizer.step()
            training.optimizer.zero_grad(set_to_none=True)

    for batch in batches[:2]:
        step(training, batch)
        step(resumed, batch)
    saved = io.BytesIO()
    torch.save(training.optimizer.state_dict(), saved)
    saved.seek(0)
    resumed.optimizer.load_state_dict(torch.load(saved, weights_only=True))

    for p, resumed_p in zip(model.parameters(), resumed_model.parameters()):
        for key, value in training.optimizer.state[p].items():
            loaded = resumed.optimizer.state[resumed_p][key]
            if isinstance(value, torch.Tensor):
                assert loaded.dtype == value.dtype and torch.equal(loaded, value), key
            else:
                assert loaded == value, key
    step(training, batches[2])
    step(resumed, batches[2])
    for p, resumed_p in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(p, resumed_p)


def test_step_temporaries_stay_within_one_parameter():
    """Our step holds one parameter's low-rank temporaries at a time, not every parameter's."""
    spec = tiny_spec(method="galore", method_options={"rank": 16})
    model, batches = tiny_model_and_batches(spec, 3)
    projected_group = galore_groups(model, spec)[1]
    optimizer = GaLoreAdamW([projected_group], lr=1e-3)
    tracker = MemoryTracker(model, optimizer)
    for batch in batches:
        WORKLOADS["llama"].loss(model, batch).backward()
        with tracker.step():  # the last step is tracked with its projectors and moments in place
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    low_rank_bytes = [optimizer.state[p]["exp_avg"].numel() * 4 for p in projected_group["params"]]
    temporaries = tracker.steps[-1].at_peak_bytes["other"]
    assert 0 < temporaries <= 2 * max(low_rank_bytes) < sum(low_rank_bytes)


@pytest.mark.parametrize("shape", [(64, 32), (32, 64)])
def test_projector_state_holds_only_its_rank(shape):
    """A float32 projector is a copy of r singular vectors, not a view keeping the whole factor."""
    state = {}
    refresh_projector(state, torch.randn(shape), 8, "std")
    (projector,) = state.values()
    assert projector.untyped_storage().nbytes() == projector.numel() * 4 == 8 * 32 * 4
