"""torchao's low-bit AdamW (torchao.optim.AdamW8bit and AdamW4bit): blockwise-quantized moments
held in tensor subclasses (8-bit: block 256, 4-bit: block 128, each with its own quantization
map), for tensors of at least 4096 elements; smaller ones keep float32 moments.

torchao compiles its per-parameter update with torch.compile. Here that update runs eagerly:
torch.compile refuses to run under the memory tracker's dispatch mode (which watches every
step on every device), and on CPU it compiles once per parameter shape, minutes per run. The
state, and so its memory, is torchao's own; the speed is not the fused kernel's.
"""

from unittest import mock

import torch
from torchao.optim import AdamW4bit, AdamW8bit

from methods.base import Method, NoOptions, Training, warmup_cosine_schedule, weight_decay_groups


def _uncompiled(function, **compile_options):
    return function


def _eager(optimizer_class):
    class Eager(optimizer_class):
        @torch.no_grad()
        def step(self, closure=None):
            with mock.patch.object(torch, "compile", _uncompiled):
                return super().step(closure)

    Eager.__name__ = f"Eager{optimizer_class.__name__}"
    return Eager


def _prepare(optimizer_class):
    def prepare(model, spec, options: NoOptions, workload) -> Training:
        parameters = [p for p in model.parameters() if p.requires_grad]
        groups = weight_decay_groups(model, parameters, spec)
        optimizer = optimizer_class(groups, lr=spec.lr, weight_decay=spec.weight_decay)
        return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))

    return prepare


ADAMW_8BIT = Method(
    "torchao_adamw8bit", _prepare(_eager(AdamW8bit)), NoOptions, "torchao AdamW8bit (blockwise 8-bit moments, eager)",
)
ADAMW_4BIT = Method(
    "torchao_adamw4bit", _prepare(_eager(AdamW4bit)), NoOptions, "torchao AdamW4bit (blockwise 4-bit moments, eager)",
)
