"""GaLore AdamW, 32-bit: Adam moments at the projected shape for the groups that carry a rank.

The update is galore-torch's GaLoreAdamW (transformers' AdamW formula: eps added to √v
before bias correction, decoupled weight decay applied full-rank after the step), computed
with multi-tensor ops and the projection back accumulated straight into the weight.
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
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        projected = "rank" in group
        grads, states = [], []
        for p in params:
            state = self.state[p]
            step = state.get("step", 0)
            grad = low_rank_gradient(state, p.grad, step, group) if projected else p.grad
            if step == 0:
                state["exp_avg"] = torch.zeros_like(grad)
                state["exp_avg_sq"] = torch.zeros_like(grad)
            state["step"] = step + 1
            grads.append(grad)
            states.append(state)

        beta1, beta2 = group["betas"]
        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denominators, group["eps"])
        step_sizes = [
            group["lr"] * math.sqrt(1.0 - beta2 ** state["step"]) / (1.0 - beta1 ** state["step"]) for state in states
        ]

        if projected:
            # The normalized low-rank update m / (√v + eps), written over the denominators.
            torch._foreach_reciprocal_(denominators)
            torch._foreach_mul_(denominators, exp_avgs)
            for p, state, update, step_size in zip(params, states, denominators, step_sizes):
                add_projected_back(p, state, update, alpha=-step_size * group["scale"])
        else:
            torch._foreach_addcdiv_(params, exp_avgs, denominators, [-s for s in step_sizes])

        if group["weight_decay"] > 0.0:
            torch._foreach_mul_(params, 1.0 - group["lr"] * group["weight_decay"])
