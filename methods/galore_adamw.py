"""GaLore AdamW, 32-bit: Adam moments at the projected shape for the groups that carry a rank.

The update is galore-torch's GaLoreAdamW (transformers' AdamW formula: eps added to √v
before bias correction, decoupled weight decay applied full-rank after the step), computed
one parameter at a time with the projection back accumulated straight into the weight.
"""

import math

import torch

from methods.galore_projector import add_projected_back, low_rank_gradient


class GaLoreAdamW(torch.optim.Optimizer):
    """AdamW; a param group with "rank", "update_proj_gap", "scale" and "proj_type" is GaLore-projected."""

    # eps 1e-6 is galore-torch's (transformers') AdamW default, which the paper's runs used.
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict):
        # One parameter at a time: the temporaries (low-rank gradient, update) then never exceed
        # one parameter's, where multi-tensor ops over the group would hold them for every
        # parameter at once (about two moments' worth: 6 GiB at 7B in BF16).
        for p in group["params"]:
            if p.grad is not None:
                self._step_parameter(group, p)

    def _step_parameter(self, group: dict, p: torch.Tensor):
        state = self.state[p]
        step = state.get("step", 0)
        projected = "rank" in group
        grad = low_rank_gradient(state, p.grad, step, group) if projected else p.grad
        if step == 0:
            state["exp_avg"] = torch.zeros_like(grad)
            state["exp_avg_sq"] = torch.zeros_like(grad)
        state["step"] = step = step + 1

        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        del grad
        step_size = group["lr"] * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
        denominator = exp_avg_sq.sqrt().add_(group["eps"])
        if projected:
            # The normalized low-rank update m / (√v + eps), written over the denominator.
            update = denominator.reciprocal_().mul_(exp_avg)
            add_projected_back(p, state, update, alpha=-step_size * group["scale"])
        else:
            p.addcdiv_(exp_avg, denominator, value=-step_size)
        if group["weight_decay"] > 0.0:
            p.mul_(1.0 - group["lr"] * group["weight_decay"])
