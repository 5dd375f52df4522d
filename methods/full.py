"""Full-rank AdamW: the baseline every other method is compared with."""

from methods.base import Method, NoOptions, Training, adamw, warmup_cosine_schedule, weight_decay_groups


def prepare(model, spec, options, workload):
    optimizer = adamw(weight_decay_groups(model, list(model.parameters()), spec), spec)
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


METHOD = Method("full", prepare, NoOptions, "full-rank AdamW (torch, fused on CUDA)", fsdp2=True)
