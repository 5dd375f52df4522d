"""Muon (Jordan et al., 2024), with torch's own torch.optim.Muon, on the hidden weights.

Muon keeps one momentum buffer per weight matrix and updates it by the buffer orthogonalised
with a few Newton-Schulz iterations; its authors apply it to the 2-D hidden weights only (the
attention and MLP Linear layers inside the repeated blocks) and leave embeddings, the LM head
or classifier, norms and biases to AdamW. The two optimizers sit behind one optimizer face, so
that the loop steps them together and one lr schedule drives both.

Learning rates: Muon's groups start at options.lr (none: the spec's lr) and follow the run's
schedule, as AdamW's groups do at the spec's lr. With adjust_lr_fn = "match_rms_adamw" (the
default, as Moonlight) torch scales each Muon update by 0.2 sqrt(max(m, n)) so that its RMS
matches AdamW's and the spec's lr suits both; with "original" (Keller Jordan's
sqrt(max(1, m / n))) Muon wants its own, larger lr, around 0.02.
"""

from dataclasses import dataclass

import torch
from torch.optim._muon import _adjust_lr, _zeropower_via_newtonschulz

from methods.base import Method, Training, adamw, warmup_cosine_schedule, weight_decay_groups
from methods.blocks import hidden_matrices
from methods.combined_optimizer import CombinedOptimizer
from methods.row_shards import is_sharded, local, own_rows, whole

ADJUST_LR_FNS = ("match_rms_adamw", "original")


@dataclass(frozen=True)
class MuonOptions:
    momentum: float = 0.95
    """Muon's momentum coefficient, in [0, 1)."""
    nesterov: bool = True
    """Nesterov momentum: orthogonalise g + momentum x buffer rather than the buffer."""
    ns_steps: int = 5
    """Newton-Schulz iterations per update, 1 to 99 (torch refuses 100 or more)."""
    adjust_lr_fn: str = "match_rms_adamw"
    """How torch scales Muon's lr per weight shape: "match_rms_adamw" (0.2 sqrt(max(m, n)), so
    AdamW's lr fits) or "original" (sqrt(max(1, m / n)), Keller Jordan's)."""
    lr: float | None = None
    """Peak lr of the Muon groups; none: the spec's lr (right for "match_rms_adamw")."""

    def __post_init__(self):
        if not 0 <= self.momentum < 1:
            raise ValueError(f"options.momentum must be in [0, 1), got {self.momentum}")
        if not 1 <= self.ns_steps <= 99:
            raise ValueError(f"options.ns_steps must be in 1..99, got {self.ns_steps}")
        if self.adjust_lr_fn not in ADJUST_LR_FNS:
            raise ValueError(f"options.adjust_lr_fn {self.adjust_lr_fn!r} is not known; accepted: "
                             f"{', '.join(ADJUST_LR_FNS)}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"options.lr must be > 0 or none, got {self.lr}")


class RowShardedMuon(torch.optim.Muon):
    """torch.optim.Muon for FSDP2's row-sharded weights (methods/row_shards.py). The momentum
    buffer is elementwise, so each rank keeps and updates its own rows of it; Newton-Schulz
    needs the whole matrix, so the update is gathered, orthogonalised whole, exactly as one
    process does it, and each rank applies its own rows. The whole update lives only while
    that one weight steps. On plain tensors this is torch's step."""

    @torch.no_grad()
    def step(self, closure=None):
        if not any(is_sharded(p) for group in self.param_groups for p in group["params"]):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._step_row_shard(group, p)
        return loss

    def _step_row_shard(self, group: dict, p: torch.Tensor):
        """torch's _single_tensor_muon for one weight, with the gather around Newton-Schulz."""
        grad = local(p.grad)
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p.grad)
        buffer = local(state["momentum_buffer"])
        buffer.lerp_(grad, 1 - group["momentum"])
        update = grad.lerp(buffer, group["momentum"]) if group["nesterov"] else buffer
        orthogonal = _zeropower_via_newtonschulz(whole(update, p), group["ns_coefficients"], group["ns_steps"],
                                                 group["eps"])
        weight = local(p)
        weight.mul_(1 - group["lr"] * group["weight_decay"])
        weight.add_(own_rows(orthogonal, p), alpha=-_adjust_lr(group["lr"], group["adjust_lr_fn"], p.shape))


def prepare(model, spec, options: MuonOptions, workload) -> Training:
    hidden = [p for p in hidden_matrices(model) if p.requires_grad]
    hidden_ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in hidden_ids]
    muon = RowShardedMuon(
        hidden,
        lr=options.lr or spec.lr,
        weight_decay=spec.weight_decay,
        momentum=options.momentum,
        nesterov=options.nesterov,
        ns_steps=options.ns_steps,
        adjust_lr_fn=options.adjust_lr_fn,
    )
    optimizer = CombinedOptimizer([muon, adamw(weight_decay_groups(model, rest, spec), spec)])
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


METHOD = Method("muon", prepare, MuonOptions,
                "Muon (torch.optim.Muon) on the hidden 2-D weights, AdamW on embeddings, head, norms, biases", fsdp2=True)
