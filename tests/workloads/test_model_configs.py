"""The shipped config.json sizes: each builds the model its shape says (a parameter count
derived by formula from the config, and the one its model card publishes), on the meta device;
a config.json given by path works as a size; the LLaMA sizes still build LLaMA's own model."""

import json

import pytest
import torch

from core.spec import RunSpec
from suites.load import load_suite
from training.preflight import PreflightError, check_run
from workloads import WORKLOADS, parameter_count
from workloads.sizes import CONFIGS_DIR, model_config, shipped_configs, size_default

PUBLISHED_BILLIONS = {
    "llama3.2-1b": 1.24, "llama3.2-3b": 3.21, "llama3.1-8b": 8.03, "qwen2.5-0.5b": 0.49, "qwen2.5-7b": 7.62,
    "mistral-7b": 7.24, "gemma2-2b": 2.61,
}
"""Parameters (billions, as rounded there) on each model's Hugging Face model card."""
NORMS_PER_LAYER = {"gemma2": 4}
"""RMSNorms in a decoder layer: Gemma 2 adds post-attention and pre/post-feed-forward norms; 2 otherwise."""
QKV_BIAS = ("qwen2",)
"""Families whose query, key and value projections carry a bias."""


def parameters_by_formula(config: dict) -> int:
    hidden, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    kv_heads = config.get("num_key_value_heads", heads)
    query, key_value = heads * head_dim, kv_heads * head_dim
    attention = hidden * query + 2 * hidden * key_value + query * hidden
    if config["model_type"] in QKV_BIAS:
        attention += query + 2 * key_value
    mlp = 3 * hidden * config["intermediate_size"]  # gate, up, down
    norms = NORMS_PER_LAYER.get(config["model_type"], 2) * hidden
    embeddings = vocab * hidden * (1 if config["tie_word_embeddings"] else 2)
    return embeddings + layers * (attention + mlp + norms) + hidden  # + the final norm


@pytest.mark.parametrize("size", shipped_configs())
def test_the_built_model_holds_the_parameters_its_shape_gives(size):
    config = model_config("llama", size)
    expected = parameters_by_formula(config)
    assert parameter_count("llama", size) == expected
    if size in PUBLISHED_BILLIONS:
        assert round(expected / 1e9, 2) == PUBLISHED_BILLIONS[size]


def test_every_published_model_is_shipped():
    assert set(PUBLISHED_BILLIONS) <= set(shipped_configs())


@pytest.mark.parametrize("size, family", [("llama3.1-8b", "LlamaForCausalLM"), ("qwen2.5-7b", "Qwen2ForCausalLM"),
                                          ("mistral-7b", "MistralForCausalLM"), ("gemma2-2b", "Gemma2ForCausalLM")])
def test_a_shipped_name_builds_its_family_in_float32(size, family):
    with torch.device("meta"):
        model = WORKLOADS["llama"].build_model(RunSpec(workload="llama", size=size, method="full"))
    assert type(model).__name__ == family
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}


def test_the_llama_sizes_still_build_llamas_own_model():
    torch.manual_seed(0)
    model = WORKLOADS["llama"].build_model(RunSpec(workload="llama", size="tiny", method="full"))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not model.config.tie_word_embeddings
    assert model.config.max_position_embeddings == 1024
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (64, 64)  # multi-head, as before


def test_galore_rank_of_a_config_is_a_quarter_of_its_width_within_its_key_value_width():
    assert size_default("llama", "gemma2-2b", "galore_rank") == 2304 // 4
    assert size_default("llama", "qwen2.5-0.5b", "galore_rank") == 2 * 64  # not 896 // 4: k_proj is 896 x 128
    assert size_default("llama", "7b", "galore_rank") == 1024  # sizes.toml's, as before


def test_a_config_json_path_is_a_size(tmp_path, write_suite):
    path = tmp_path / "config.json"
    path.write_text((CONFIGS_DIR / "tiny-qwen2.json").read_text())
    spec = RunSpec(workload="llama", size=str(path), method="galore", device="cpu", seq_len=32)
    check_run(spec)
    assert parameter_count("llama", str(path)) == parameters_by_formula(json.loads(path.read_text()))
    suite = load_suite(write_suite(f"""
        [[workloads]]
        name = "llama"
        size = "{path}"
        [[methods]]
        name = "full"
    """))
    assert [run.spec.size for run in suite.runs] == [str(path)]


def test_a_path_without_config_and_a_too_long_sequence_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no config.json there"):
        check_run(RunSpec(workload="llama", size=str(tmp_path), method="full", device="cpu"))
    with pytest.raises(PreflightError, match=r"seq_len = 2048 is longer than size 'tiny-gemma2' takes .*2\.\.1024"):
        check_run(RunSpec(workload="llama", size="tiny-gemma2", method="full", device="cpu", seq_len=2048))
