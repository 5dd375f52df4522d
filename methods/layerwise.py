"""Layer-wise updates: each parameter is stepped from its gradient hook and its gradient freed
at once, so full gradients of all layers never coexist (the GaLore paper's per-layer updates).

Unlike galore-torch's example and Hugging Face's Trainer this works with gradient
accumulation: the hooks step only during the step's last micro-batch, so each parameter is
updated once per optimizer step with its accumulated gradient, and the lr schedule, which
drives the one LayerwiseOptimizer below, advances once per step as for any other method.

On several ranks each hook first averages its gradient over the ranks (training/parallel.py
says why this, and not DistributedDataParallel): every rank then applies the same update, and
GaLore's projectors come from the same gradient on every rank.
"""

from collections.abc import Mapping

import torch
import torch.distributed as dist

from methods.base import Method, NoOptions, Training, adamw, adamw8bit, warmup_cosine_schedule, weight_decay_groups
from methods.combined_optimizer import CombinedOptimizer


def average_gradient(gradient: torch.Tensor):
    """All-reduce one gradient to its mean over the ranks, in place; nothing with one rank."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(gradient)  # gloo has no AVG
        gradient.div_(dist.get_world_size())


class _MergedState(Mapping):
    """parameter -> its state, read through to the parameter's own optimizer (no copies)."""

    def __init__(self, optimizer_of: dict):
        self._optimizer_of = optimizer_of

    def __getitem__(self, parameter):
        return self._optimizer_of[parameter].state[parameter]

    def __iter__(self):
        return (p for p, optimizer in self._optimizer_of.items() if p in optimizer.state)

    def __len__(self):
        return sum(1 for _ in self)


class LayerwiseOptimizer(CombinedOptimizer):
    """One optimizer per parameter behind a single optimizer face (param_groups for the lr
    scheduler, state and state_dict() are the per-parameter optimizers'), stepped from the
    parameters' gradient hooks."""

    def __init__(self, optimizer_of: dict):
        super().__init__(list({id(o): o for o in optimizer_of.values()}.values()))
        self._optimizer_of = optimizer_of
        # Looked up by parameter, not by scanning every optimizer: there is one per parameter.
        self.state = _MergedState(optimizer_of)
        self._ready = []
        self.stepping = False
        """True during the last micro-batch of a step: gradient hooks then update and free."""
        for parameter in optimizer_of:
            parameter.register_post_accumulate_grad_hook(self._gradient_ready)

    def _gradient_ready(self, parameter: torch.Tensor):
        if self.stepping:
            average_gradient(parameter.grad)
            self._ready.append(parameter)
            self.step()

    @torch.no_grad()
    def step(self, closure=None):
        """Update the parameters whose accumulated gradient is ready, then free those gradients."""
        for parameter in self._ready:
            self._optimizer_of[parameter].step()
            parameter.grad = None
        self._ready.clear()


def refuse_grad_clip(spec):
    if spec.grad_clip > 0:
        raise ValueError(
            f"method {spec.method}: grad_clip = {spec.grad_clip} cannot be honoured by layer-wise updates "
            "(each layer is updated and its gradient freed before a global norm exists); set grad_clip = 0"
        )


def layerwise_training(model: torch.nn.Module, spec, optimizer_of: dict) -> Training:
    """The Training for per-parameter optimizers: hooks step them on each step's last micro-batch."""
    refuse_grad_clip(spec)
    optimizer = LayerwiseOptimizer(optimizer_of)

    def before_micro_batch(is_last: bool):
        optimizer.stepping = is_last

    return Training(
        model=model,
        optimizer=optimizer,
        scheduler=warmup_cosine_schedule(optimizer, spec),
        steps_in_backward=True,
        before_micro_batch=before_micro_batch,
    )


def _one_optimizer_per_parameter(make_optimizer):
    def prepare(model, spec, options, workload) -> Training:
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer_of = {
            p: make_optimizer([{**group, "params": [p]}], spec)
            for group in weight_decay_groups(model, trainable, spec)
            for p in group["params"]
        }
        return layerwise_training(model, spec, optimizer_of)

    return prepare


FULL_METHOD = Method(
    "full_layerwise", _one_optimizer_per_parameter(adamw), NoOptions, "full-rank AdamW, layer-wise updates"
)
ADAM8BIT_METHOD = Method(
    "adam8bit_layerwise",
    _one_optimizer_per_parameter(adamw8bit),
    NoOptions,
    "bitsandbytes AdamW8bit, layer-wise updates",
)
