"""The method contract: a method turns a model into something trainable."""

from dataclasses import dataclass, fields
from typing import Callable

import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from suites.spec import RunSpec


@dataclass
class Training:
    """What the training loop needs from a method; the loop never asks which method it is."""

    model: torch.nn.Module
    """The model to train (possibly wrapped, e.g. by peft)."""
    optimizer: torch.optim.Optimizer
    """Stepped by the loop, unless steps_in_backward."""
    scheduler: torch.optim.lr_scheduler.LRScheduler
    """Stepped by the loop once per optimizer step, always."""
    steps_in_backward: bool = False
    """True when parameters are updated from gradient hooks (layer-wise): the loop must not
    call optimizer.step() or zero_grad(), and must not clip."""
    before_micro_batch: Callable[[bool], None] | None = None
    """Called before each micro-batch's backward with whether it is the step's last one."""
    after_step: Callable[[int], None] | None = None
    """Called after each optimizer step with the 0-based step index (ReLoRA's merge)."""


@dataclass(frozen=True)
class Method:
    """A registered method: its options dataclass and the function that prepares a model."""

    prepare: Callable[[torch.nn.Module, RunSpec], Training]
    options: type
    """Dataclass of the method's options, every field with a default."""
    summary: str
    """One line for `harness.py list`."""

    def parse_options(self, values: dict):
        """Build the options dataclass, naming any key it does not accept."""
        accepted = {f.name for f in fields(self.options)}
        unknown = sorted(set(values) - accepted)
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)}; accepted: {', '.join(sorted(accepted)) or 'none'}"
            )
        return self.options(**values)


@dataclass(frozen=True)
class NoOptions:
    """For methods that take no options."""


def adamw(parameters: list[torch.nn.Parameter], spec: RunSpec) -> torch.optim.AdamW:
    """torch AdamW at the spec's lr and weight decay, on its fastest path for the device."""
    on_cuda = parameters[0].is_cuda
    # fused is the fastest AdamW on CUDA; on CPU foreach is the multi-tensor path.
    return torch.optim.AdamW(
        parameters, lr=spec.lr, weight_decay=spec.weight_decay, fused=on_cuda, foreach=not on_cuda
    )


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, spec: RunSpec):
    """The paper's schedule: linear warm-up, then cosine decay to 10% of the peak lr."""
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=int(spec.warmup_fraction * spec.steps),
        num_training_steps=spec.steps,
        min_lr_rate=0.1,
    )
