"""8-bit Adam: bitsandbytes' AdamW with blockwise-quantized moments."""

import bitsandbytes as bnb

from methods.base import Method, NoOptions, Training, warmup_cosine_schedule


def prepare(model, spec):
    optimizer = bnb.optim.AdamW8bit(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


METHOD = Method(prepare=prepare, options=NoOptions, summary="bitsandbytes AdamW8bit (blockwise 8-bit moments)")
