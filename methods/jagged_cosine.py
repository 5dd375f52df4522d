"""ReLoRA's jagged cosine schedule: the paper's warm-up cosine, with a linear ramp after each restart.

Right after a ReLoRA reset the LoRA factors are fresh and their Adam moments pruned, so
the first updates are badly scaled; the lr therefore ramps from 0 back up to the cosine
curve over a few restart warm-up steps.
"""

import math
from functools import partial

import torch

from methods.base import MIN_LR_RATE


def jagged_cosine_multiplier(
    step: int, *, warmup_steps: int, total_steps: int, restart_steps: tuple[int, ...], restart_warmup_steps: int
) -> float:
    """The lr multiplier for `step` (the number of optimizer steps already taken).

    Linear warm-up over warmup_steps, then cosine decay to MIN_LR_RATE at total_steps; from
    each restart step R on, the multiplier is scaled by (step - R) / restart_warmup_steps
    until that reaches 1.
    """
    if step < warmup_steps:
        multiplier = step / warmup_steps
    else:
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        multiplier = MIN_LR_RATE + (1 - MIN_LR_RATE) * 0.5 * (1 + math.cos(math.pi * progress))
    last_restart = max((r for r in restart_steps if r <= step), default=None)
    if last_restart is not None and step - last_restart < restart_warmup_steps:
        multiplier *= (step - last_restart) / restart_warmup_steps
    return multiplier


def jagged_cosine_schedule(
    optimizer: torch.optim.Optimizer, spec, restart_steps: tuple[int, ...], restart_warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule over the whole run, with the run's warm-up fraction and step count."""
    multiplier = partial(
        jagged_cosine_multiplier,
        warmup_steps=int(spec.warmup_fraction * spec.steps),
        total_steps=spec.steps,
        restart_steps=restart_steps,
        restart_warmup_steps=restart_warmup_steps,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
