"""LISA, layer-wise importance sampling (Pan et al., 2024): AdamW on everything outside the
repeated layers (embeddings, final norm, LM head or classifier; RoBERTa's embedding LayerNorm
too) all the time, and on `n_layers` of the N layers drawn at random for each period of
`interval` steps; the other layers are frozen (requires_grad False), so they have no gradients.

Our own code (there is no LISA package; LMFlow's callback is tied to its trainer). When a
period ends, the optimizer state of the layers switched off is dropped, so the state is only
ever that of the active layers and of what is always trained (the issue: "LISA's state only
for the active block"); a layer switched on starts from fresh moments. The draws come from the
spec's seed, so runs repeat.
"""

import random
from dataclasses import dataclass

from methods.base import Method, Training, adamw, warmup_cosine_schedule, weight_decay_groups
from methods.blocks import refuse_what_switching_breaks, repeated_layers


@dataclass(frozen=True)
class LisaOptions:
    n_layers: int = 2
    """Layers trained in each period, drawn at random; 1 to the model's number of layers."""
    interval: int = 20
    """Optimizer steps per period (the paper's K); at least 1."""

    def __post_init__(self):
        for name in ("n_layers", "interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"options.{name} must be >= 1, got {getattr(self, name)}")


def prepare(model, spec, options: LisaOptions, workload) -> Training:
    refuse_what_switching_breaks(spec, "lisa")
    _, layers = repeated_layers(model)
    if options.n_layers > len(layers):
        raise ValueError(f"options.n_layers = {options.n_layers} exceeds the model's {len(layers)} layers; "
                         f"accepted: 1..{len(layers)}")
    optimizer = adamw(weight_decay_groups(model, list(model.parameters()), spec), spec)
    draws = random.Random(spec.seed)

    def activate(active: set[int]):
        for index, layer in enumerate(layers):
            for parameter in layer.parameters():
                parameter.requires_grad_(index in active)
                if index not in active:
                    parameter.grad = None
                    optimizer.state.pop(parameter, None)

    def after_step(step: int):
        # None after the last step: no step would use the new layers, and the run's final state
        # figures would miss their moments.
        if (step + 1) % options.interval == 0 and step + 1 < spec.steps:
            activate(set(draws.sample(range(len(layers)), options.n_layers)))

    activate(set(draws.sample(range(len(layers)), options.n_layers)))
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec),
                    after_step=after_step)


METHOD = Method("lisa", prepare, LisaOptions,
                "LISA: AdamW on embeddings and head, and on n_layers random layers per interval steps (ours)")
