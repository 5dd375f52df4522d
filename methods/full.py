"""Full-rank AdamW: the baseline every other method is compared with."""

import torch

from methods.base import Method, NoOptions, Training, warmup_cosine_schedule


def prepare(model, spec):
    on_cuda = next(model.parameters()).is_cuda
    # fused is the fastest AdamW on CUDA; on CPU foreach is the multi-tensor path.
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=spec.lr,
        weight_decay=spec.weight_decay,
        fused=on_cuda,
        foreach=not on_cuda,
    )
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


METHOD = Method(prepare=prepare, options=NoOptions, summary="full-rank AdamW (torch, fused on CUDA)")
