"""The repeated layers of a model (LLaMA's decoder layers, RoBERTa's encoder layers), found from
the architecture rather than from one model family's parameter names: Muon orthogonalises the
2-D weights of their Linear layers, LISA and BAdam switch which of them train."""

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
