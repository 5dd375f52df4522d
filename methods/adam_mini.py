"""Adam-mini (Zhang et al., 2024), with the adam-mini package's own optimizer.

Adam's first moment stays full-size; the second moment is one value per block: per head for
queries and keys, per output neuron for embeddings, values, attention output, MLP and LM head,
one per tensor for norms, and full Adam for biases. The package finds the blocks by substrings of
parameter names (its defaults fit LLaMA's); here they are the names of the model's own layers by
role (methods/blocks.py), so that any architecture with separate query, key, value and output
Linears places its blocks, and norms (RoBERTa's embeddings.LayerNorm, *.output.LayerNorm) are
never caught by a name meant for a Linear.
"""

import torch
from adam_mini import Adam_mini

from methods.base import Method, NoOptions, Training, warmup_cosine_schedule
from methods.blocks import linear_roles, outside_parameters, repeated_layers


def _module_names(model: torch.nn.Module, kind: type, parameter_names: list[str] | None = None) -> set[str]:
    """Lower-cased names (the package lower-cases the parameters' names) of the modules of `kind`,
    only those holding one of `parameter_names` where given."""
    return {
        name.lower()
        for name, module in model.named_modules()
        if isinstance(module, kind)
        and (parameter_names is None or any(f"{name}.{own}" in parameter_names for own, _ in module.named_parameters()))
    }


def prepare(model, spec, options: NoOptions, workload) -> Training:
    config = model.config
    roles = linear_roles(model, "adam_mini")
    optimizer = Adam_mini(
        named_parameters=model.named_parameters(),
        lr=spec.lr,
        weight_decay=spec.weight_decay,
        dim=config.hidden_size,
        n_heads=config.num_attention_heads,
        n_kv_heads=getattr(config, "num_key_value_heads", None),
        verbose=False,  # it prints every parameter's name otherwise
    )
    _, after_layers = outside_parameters(model)
    optimizer.embd_names = _module_names(model, torch.nn.Embedding)
    optimizer.output_names = _module_names(model, torch.nn.Linear, after_layers)
    optimizer.wqk_names = {roles.query.lower(), roles.key.lower()}
    optimizer.wv_names = {roles.value.lower()}
    optimizer.attn_proj_names = {roles.attention_output.lower()}
    optimizer.mlp_names = {name.lower() for name in roles.mlp}
    # One value per head of hidden_size x head_dim weights: the package assumes head_dim =
    # hidden / heads, which Gemma 2 (head_dim 256 at hidden 2304, 8 heads) breaks.
    query = repeated_layers(model)[1][0].get_submodule(roles.query)
    optimizer.head_numel = query.in_features * query.out_features // config.num_attention_heads
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


METHOD = Method("adam_mini", prepare, NoOptions, "Adam-mini (adam-mini): one second-moment value per block")
