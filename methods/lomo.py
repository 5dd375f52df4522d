"""LOMO (Lv et al. 2023) and AdaLOMO (Lv et al. 2023b), with the lomo-optim package's own update math.

LOMO fuses plain SGD into the backward: each parameter is updated as soon as its gradient
exists and the gradient is freed at once, and no optimizer state is kept. AdaLOMO adds an
Adafactor-style adaptive step: a second moment factored into a row and a column vector per
matrix (a full vector per 1-D tensor), float32, an update clipped to RMS clip_threshold and
scaled by the parameter's RMS.

What of lomo-optim 0.1.1 runs here, and what does not:
  - Runs: each package optimizer's update closure (`grad_func`, from its fuse_update), the
    whole of the update math: gradient to float32, AdaLOMO's factored moments, update clipping,
    relative step, weight decay, the write back into the parameter. One package optimizer is
    built per parameter, over a one-parameter module, and our layer-wise hook
    (methods/layerwise.py) calls its closure when that parameter's gradient is ready.
  - Does not run: the tensor hooks the constructors register (suppressed while they run), and
    fused_backward / grad_norm. The package's hooks fire when a gradient is computed, before it
    is accumulated into .grad, and update every parameter that then holds one: that cannot
    honour gradient accumulation, and its last parameter waits for fused_backward, which calls
    backward itself, as our loop does. Our post-accumulate hooks step each parameter once per
    optimizer step with its accumulated gradient, during the step's last micro-batch, and
    average it over the ranks first, so accumulation and DDP work. Gradient clipping by the
    global norm (the package's grad_norm: a second backward pass) is refused, as for every
    layer-wise method.
  - Changed: the lr is read from the optimizer's param group (our schedule's) at each step, not
    passed to fused_backward; AdaLOMO's step count, which fused_backward advances, advances once
    per optimizer step here, and is kept in the param group, so that a checkpoint restores it. AdaLOMO is built with loss_scale 0 (no scaling): the package scales
    the loss by 2^10 in fused_backward and divides each gradient by it in the hook, and our
    loop's backward runs on the unscaled loss. Its moments, which the package allocates with
    .cuda(), are allocated on the parameter's device (the package cannot run on CPU otherwise),
    and are also put in the optimizer's state (the same tensors), where checkpoints and the
    memory tracker find optimizer state.
"""

from unittest import mock

import torch
from lomo_optim import AdaLomo, Lomo

from methods.base import Method, NoOptions, weight_decay_groups
from methods.layerwise import layerwise_training

NAME = "weight"
"""The parameter's name inside its one-parameter module: the key of AdaLOMO's moment dicts."""


def _no_hook(tensor, hook):
    return None


def _one_parameter_module(parameter: torch.nn.Parameter) -> torch.nn.Module:
    holder = torch.nn.Module()
    holder.register_parameter(NAME, parameter)
    return holder


class LomoOfOne(Lomo):
    """lomo-optim's Lomo over one parameter, stepped by our gradient hook."""

    def __init__(self, parameter: torch.nn.Parameter, lr: float, weight_decay: float):
        with mock.patch.object(torch.Tensor, "register_hook", _no_hook):
            super().__init__(_one_parameter_module(parameter), lr=lr, weight_decay=weight_decay)

    @torch.no_grad()
    def step(self, closure=None):
        self.lr = self.param_groups[0]["lr"]
        self.grad_func(None)  # the closure's argument is a placeholder


class AdaLomoOfOne(AdaLomo):
    """lomo-optim's AdaLomo over one parameter, stepped by our gradient hook; its moments are
    also its optimizer state."""

    MOMENTS = ("exp_avg_sq", "exp_avg_sq_row", "exp_avg_sq_col")

    def __init__(self, parameter: torch.nn.Parameter, lr: float, weight_decay: float):
        def to_the_parameters_device(tensor, *args, **kwargs):
            return tensor.to(parameter.device)

        with mock.patch.object(torch.Tensor, "register_hook", _no_hook), \
                mock.patch.object(torch.Tensor, "cuda", to_the_parameters_device):
            super().__init__(_one_parameter_module(parameter), lr=lr, weight_decay=weight_decay, loss_scale=0)
        self.parameter = parameter
        self.state[parameter] = {name: getattr(self, name)[NAME] for name in self.MOMENTS
                                 if NAME in getattr(self, name)}

    @torch.no_grad()
    def step(self, closure=None):
        # The state may have been replaced by a checkpoint's: the package reads its own dicts.
        for name, moment in self.state[self.parameter].items():
            getattr(self, name)[NAME] = moment
        group = self.param_groups[0]
        self.lr = group["lr"]
        # Counted in the group, which checkpoints keep (the package's attribute they would not).
        group["step_num"] = self.step_num = group.get("step_num", 0) + 1
        self.grad_func(None)


def _prepare(package_optimizer):
    def prepare(model, spec, options, workload):
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer_of = {
            p: package_optimizer(p, lr=spec.lr, weight_decay=group.get("weight_decay", spec.weight_decay))
            for group in weight_decay_groups(model, trainable, spec)
            for p in group["params"]
        }
        return layerwise_training(model, spec, optimizer_of)

    return prepare


LOMO = Method("lomo", _prepare(LomoOfOne), NoOptions,
              "LOMO (lomo-optim): SGD fused into the backward, no optimizer state")
ADALOMO = Method("adalomo", _prepare(AdaLomoOfOne), NoOptions,
                 "AdaLOMO (lomo-optim): factored second moments, fused into the backward")
