"""Registry of training methods: name -> Method. Adding a method is one file plus one line."""

import logging

# bitsandbytes (imported by our 8-bit methods, by peft and by transformers' schedulers) tries,
# on CPUs with AVX512-BF16, to fetch an optional 4-bit kernel from the Hub at import and logs
# a warning on every start when it cannot. No method uses 4-bit kernels; every import of
# bitsandbytes here goes through this package, so this line runs before it.
# (qlora's 4-bit layers never reach that kernel: methods/qlora.py turns its inference path off.)
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
# torchao warns at import that its CUDA kernel libraries do not load here, and torch that
# torchao registers enums the old way; its low-bit optimizers need neither.
logging.getLogger("torchao").setLevel(logging.ERROR)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

from methods import (  # noqa: E402
    adam8bit,
    adam_mini,
    apollo,
    badam,
    cpu_offload,
    fira,
    full,
    galore,
    layerwise,
    lisa,
    lomo,
    lora,
    lora_variants,
    low_rank,
    muon,
    paged_adam8bit,
    q_galore,
    qlora,
    relora,
    torchao_lowbit,
)
from methods.base import Training  # noqa: E402

METHODS = {
    method.name: method
    for method in (
        full.METHOD,
        adam8bit.METHOD,
        lora.METHOD,
        relora.METHOD,
        low_rank.METHOD,
        galore.GALORE,
        galore.GALORE_8BIT,
        galore.GALORE_LAYERWISE,
        galore.GALORE_8BIT_LAYERWISE,
        galore.GALORE_REFERENCE,
        layerwise.FULL_METHOD,
        layerwise.ADAM8BIT_METHOD,
        apollo.APOLLO,
        apollo.APOLLO_MINI,
        apollo.APOLLO_LAYERWISE,
        adam_mini.METHOD,
        fira.METHOD,
        torchao_lowbit.ADAMW_8BIT,
        torchao_lowbit.ADAMW_4BIT,
        q_galore.METHOD,
        lora_variants.DORA,
        lora_variants.PISSA,
        qlora.METHOD,
        muon.METHOD,
        lisa.METHOD,
        badam.METHOD,
        lomo.LOMO,
        lomo.ADALOMO,
        paged_adam8bit.METHOD,
        cpu_offload.METHOD,
    )
}


def prepare_training(model, spec, workload) -> Training:
    """The spec's method applied to `model`: its options parsed from spec.method_options, after
    activation checkpointing where the spec asks for it."""
    method = METHODS[spec.method]
    if spec.sharding == "fsdp2" and not method.fsdp2:
        accepted = ", ".join(name for name, m in METHODS.items() if m.fsdp2)
        raise ValueError(f'method {spec.method} does not train under sharding = "fsdp2" (each rank holds a DTensor '
                         f"shard of every weight; the README's \"Several processes\" says what each method lacks); "
                         f"accepted: {accepted}")
    if spec.activation_checkpointing:
        # Non-reentrant checkpointing: the reentrant kind drops gradients when the layer's
        # inputs do not require grad, as with LoRA's frozen embeddings.
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        # Training keeps no KV cache; said here, transformers does not warn on every forward.
        model.config.use_cache = False
    return method.prepare(model, spec, method.parse_options(spec.method_options), workload)
