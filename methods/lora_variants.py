"""LoRA variants peft builds from one LoraConfig flag: DoRA and PiSSA.

Both adapt the same Linear layers as `lora` with the same options (rank, alpha, dropout,
train_non_lora, target_modules) and train with the same AdamW:

- DoRA (`use_dora=True`) splits each adapted weight into a magnitude and a direction: the
  output is m * (W + s B A) / ||W + s B A|| (norm per output feature), with m a trainable
  vector of out_features values per adapted Linear. peft computes the norm of W + s B A in
  every forward (detached, as the paper's section 4.3 says, so no gradient flows through it):
  an out x in temporary per layer and step, which the tracker counts as activations.
- PiSSA (`init_lora_weights="pissa"`) starts B A from the rank-r principal singular vectors
  and values of W and leaves the residual W - s B A in the frozen base weight, so the model's
  output before training is the un-adapted one's; the state is LoRA's at the same rank.
"""

import re
from dataclasses import dataclass

from methods.base import Method, options_rank
from methods.lora import LoraOptions, train_adapted, wrap_with_lora

PISSA_INITS = re.compile(r"pissa(_niter_[1-9][0-9]*)?")


@dataclass(frozen=True)
class DoraOptions(LoraOptions):
    """LoRA's options: DoRA adds no knob of its own."""


@dataclass(frozen=True)
class PissaOptions(LoraOptions):
    init: str = "pissa"
    """peft's init_lora_weights: "pissa" takes an exact SVD of each weight (the paper's
    definition); "pissa_niter_<k>" a randomized SVD with k subspace iterations (the paper's fast
    variant: far faster on large weights, the principal vectors approximate)."""

    def __post_init__(self):
        super().__post_init__()
        if not PISSA_INITS.fullmatch(self.init):
            raise ValueError(f'options.init = {self.init!r}; accepted: "pissa" or "pissa_niter_<k>" with k a '
                             "positive integer")


def prepare_dora(model, spec, options, workload):
    return train_adapted(wrap_with_lora(model, options, workload, use_dora=True), spec)


def prepare_pissa(model, spec, options, workload):
    # Preflight checks the options on a model on the meta device: an SVD there has no values,
    # and peft writes its factors into adapters it made on the CPU, which torch refuses. The
    # shapes, all that preflight looks at, are LoRA's, so the meta model gets LoRA's init.
    on_meta = next(model.parameters()).is_meta
    init = True if on_meta else options.init
    return train_adapted(wrap_with_lora(model, options, workload, init_lora_weights=init), spec)


DORA = Method("dora", prepare_dora, DoraOptions,
              "DoRA via peft: LoRA plus a trainable magnitude per output feature of each adapted Linear", rank=options_rank, fsdp2=True)
PISSA = Method("pissa", prepare_pissa, PissaOptions,
               "PiSSA via peft: LoRA started from each weight's principal singular vectors, residual frozen", rank=options_rank, fsdp2=True)
