"""Adam-mini (Zhang et al., 2024), with the adam-mini package's own optimizer.

Adam's first moment stays full-size; the second moment is one value per block: per head for
queries and keys, per output neuron for embeddings, values, attention output, MLP and LM head,
one per tensor for norms, and full Adam for biases. The package finds the blocks by parameter
name and needs the model's width and head counts, read here from the model's config.
"""

from adam_mini import Adam_mini

from methods.base import Method, NoOptions, Training, warmup_cosine_schedule

# The package's default names fit LLaMA. In RoBERTa its "embed" and "output" would also catch
# the LayerNorms under embeddings.* and *.output.* as per-neuron blocks, which fails on a 1-D
# weight; these names (its documented way to adapt) leave norms to one value per tensor.
BLOCK_NAMES_BY_MODEL_TYPE = {
    "roberta": {
        "embd_names": {"word_embeddings", "position_embeddings", "token_type_embeddings"},
        "output_names": {"classifier"},
        "attn_proj_names": {"attention.output.dense"},
        "mlp_names": {"intermediate.dense", "output.dense"},
    },
}


def prepare(model, spec, options: NoOptions, workload) -> Training:
    config = model.config
    optimizer = Adam_mini(
        named_parameters=model.named_parameters(),
        lr=spec.lr,
        weight_decay=spec.weight_decay,
        dim=config.hidden_size,
        n_heads=config.num_attention_heads,
        n_kv_heads=getattr(config, "num_key_value_heads", None),
        verbose=False,  # it prints every parameter's name otherwise
    )
    for attribute, names in BLOCK_NAMES_BY_MODEL_TYPE.get(config.model_type, {}).items():
        setattr(optimizer, attribute, names)
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


METHOD = Method("adam_mini", prepare, NoOptions, "Adam-mini (adam-mini): one second-moment value per block",
                packages=("adam-mini",))
