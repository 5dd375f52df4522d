"""The Low-Rank baseline on a tiny LLaMA: parameter counts by formula, factor shapes, init scale.

That it lowers the loss is checked with the other methods in tests/test_methods.py.
"""

import pytest
import torch

from methods import prepare_training
from tests.conftest import tiny_spec
from workloads import WORKLOADS
from workloads.sizes import model_config


def low_rank_spec(**options):
    return tiny_spec(method="low_rank", method_options=options)


def prepared(spec):
    torch.manual_seed(spec.seed)
    return prepare_training(WORKLOADS["llama"].build_model(spec), spec, WORKLOADS[spec.workload])


def expected_parameter_count(rank: int) -> int:
    """LLaMA tiny with every attention/MLP weight m x n held as rank * (m + n): no biases, untied head."""
    config = model_config("llama", "tiny")
    hidden, intermediate, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    layers = config["num_hidden_layers"]
    attention = 4 * rank * (hidden + hidden)  # q, k, v, o (as many key/value heads as heads)
    mlp = 3 * rank * (hidden + intermediate)  # gate, up, down
    norms = (2 * layers + 1) * hidden
    return 2 * vocab * hidden + norms + layers * (attention + mlp)


@pytest.mark.parametrize("rank", [4, 16])
def test_parameter_count_matches_the_formula(rank):
    training = prepared(low_rank_spec(rank=rank))
    parameters = list(training.model.parameters())
    assert sum(p.numel() for p in parameters) == expected_parameter_count(rank)
    assert all(p.requires_grad for p in parameters)
    optimized = [p for group in training.optimizer.param_groups for p in group["params"]]
    assert len(optimized) == len(parameters)


def test_each_targeted_weight_becomes_two_rank_r_factors():
    rank = 4
    model = prepared(low_rank_spec(rank=rank)).model
    q_proj = model.model.layers[0].self_attn.q_proj
    hidden = model.config.hidden_size
    assert q_proj.A.weight.shape == (rank, hidden)
    assert q_proj.B.weight.shape == (hidden, rank)
    assert torch.linalg.matrix_rank(q_proj.B.weight @ q_proj.A.weight) == rank
    assert isinstance(model.lm_head, torch.nn.Linear)  # the head is not a target
    assert model.lm_head.weight.shape == (model.config.vocab_size, hidden)


def test_unmatched_target_modules_are_named():
    with pytest.raises(ValueError, match="target_modules .* matched no Linear layer"):
        prepared(low_rank_spec(target_modules=("no_such_proj",)))


def test_factor_init_matches_the_replaced_weights_scale():
    rank = 8
    original_std = float(WORKLOADS["llama"].build_model(low_rank_spec()).model.layers[0].mlp.down_proj.weight.detach().std())
    down_proj = prepared(low_rank_spec(rank=rank)).model.model.layers[0].mlp.down_proj
    product_std = float((down_proj.B.weight @ down_proj.A.weight).detach().std())
    assert product_std == pytest.approx(original_std, rel=0.2)
