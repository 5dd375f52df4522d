"""8-bit Adam: bitsandbytes' AdamW with blockwise-quantized moments."""

from methods.base import Method, NoOptions, Training, adamw8bit, warmup_cosine_schedule, weight_decay_groups


def prepare(model, spec, options, workload):
    optimizer = adamw8bit(weight_decay_groups(model, list(model.parameters()), spec), spec)
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


METHOD = Method("adam8bit", prepare, NoOptions, "bitsandbytes AdamW8bit (blockwise 8-bit moments)", fsdp2=True)
