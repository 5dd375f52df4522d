"""The repeated layers of a model (LLaMA's decoder layers, RoBERTa's encoder layers), found from
the architecture rather than from one model family's parameter names: Muon orthogonalises the
2-D weights of their Linear layers, LISA and BAdam switch which of them train."""

from dataclasses import dataclass

import torch


def repeated_layers(model: torch.nn.Module) -> tuple[str, list[torch.nn.Module]]:
    """(name, layers) of the model's stack of repeated blocks: of its ModuleLists whose children
    are all of one class, the one holding the most parameters (model.layers in LLaMA,
    roberta.encoder.layer in RoBERTa)."""
    stacks = [
        (name, list(module))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and len(module) and len({type(m) for m in module}) == 1
    ]
    if not stacks:
        raise ValueError(f"{type(model).__name__} has no stack of repeated layers (a ModuleList of one block class)")
    return max(stacks, key=lambda stack: sum(p.numel() for layer in stack[1] for p in layer.parameters()))


def hidden_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The weights of the Linear layers inside the repeated layers (attention and MLP): the
    2-D hidden weights, not embeddings, heads, norms or biases."""
    _, layers = repeated_layers(model)
    return [
        module.weight
        for layer in layers
        for module in layer.modules()
        if isinstance(module, torch.nn.Linear) and module.weight.ndim == 2
    ]


def outside_parameters(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """Names of the parameters before the repeated layers (embeddings) and after them (final
    norm, LM head or classifier), in the model's order."""
    name, _ = repeated_layers(model)
    before, after, seen_layers = [], [], False
    for parameter_name, _ in model.named_parameters():
        if parameter_name.startswith(name + "."):
            seen_layers = True
        else:
            (after if seen_layers else before).append(parameter_name)
    return before, after


def refuse_what_switching_breaks(spec, method: str):
    """Switches change which parameters require grad: refuse, in one line, what cannot follow."""
    if spec.world_size > 1:
        raise ValueError(f"method {method} with nproc > 1: DistributedDataParallel fixes when it wraps the model which "
                         "parameters it averages, and each switch of the trained layers changes them; set nproc = 1")
    if spec.checkpoint_every:
        raise ValueError(f"method {method} with checkpoint_every: a resumed run would not restore which layers train "
                         "nor their state; set checkpoint_every = 0")


def _in_attention(block: torch.nn.Module, name: str) -> bool:
    """Whether the module `name` of a block sits inside its attention (a module whose class is
    named ...Attention: LlamaAttention, Qwen2Attention, Gemma2Attention, RobertaAttention)."""
    parts = name.split(".")
    return any("Attention" in type(block.get_submodule(".".join(parts[:depth]))).__name__
               for depth in range(1, len(parts)))


def block_linear_names(model: torch.nn.Module) -> tuple[str, ...]:
    """The names, within one repeated layer, of its Linear layers (attention and MLP), in the
    layer's order: ("self_attn.q_proj", ..., "mlp.down_proj") in LLaMA, Qwen2, Mistral, Gemma 2.
    As name suffixes they pick the same layers in every repeated layer: the default targets of
    the low-rank and projection methods. A ValueError, in one line, where there are none."""
    _, layers = repeated_layers(model)
    names = tuple(name for name, module in layers[0].named_modules() if isinstance(module, torch.nn.Linear))
    if not names:
        raise ValueError(f"{type(model).__name__}'s repeated layers hold no torch.nn.Linear (a Conv1D projection, as "
                         "in GPT-2?): the method cannot find its layers; name them in options.target_modules")
    return names


@dataclass(frozen=True)
class LinearRoles:
    """The Linear layers of one repeated layer by their role, as names within the layer."""

    query: str
    key: str
    value: str
    attention_output: str
    mlp: tuple[str, ...]


def linear_roles(model: torch.nn.Module, method: str) -> LinearRoles:
    """The roles of a repeated layer's Linears: the attention's four, in the order every
    transformers attention defines them (query, key, value, output), and the rest (the MLP). A
    ValueError naming `method`, in one line, for an attention that is not four separate Linears."""
    _, layers = repeated_layers(model)
    names = block_linear_names(model)
    attention = [name for name in names if _in_attention(layers[0], name)]
    if len(attention) != 4:
        raise ValueError(f"method {method} needs an attention of separate query, key, value and output Linears; "
                         f"{type(model).__name__}'s has {len(attention)} ({', '.join(attention) or 'none found'})")
    return LinearRoles(*attention, mlp=tuple(name for name in names if name not in attention))
