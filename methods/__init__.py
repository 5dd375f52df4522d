"""Registry of training methods: name -> Method. Adding a method is one file plus one line."""

import logging

# bitsandbytes (imported by our 8-bit methods, by peft, apollo-torch and badam) tries,
# on CPUs with AVX512-BF16, to fetch an optional 4-bit kernel from the Hub at import and logs
# a warning on every start when it cannot. No method uses 4-bit kernels; every import of
# bitsandbytes here goes through this package, so this line runs before it.
# (qlora's 4-bit layers never reach that kernel: methods/qlora.py turns its inference path off.)
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
# torchao warns at import that its CUDA kernel libraries do not load here, and torch that
# torchao registers enums the old way; its low-bit optimizers need neither.
logging.getLogger("torchao").setLevel(logging.ERROR)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

import importlib  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from methods.base import Method, Training  # noqa: E402


@dataclass(frozen=True)
class Registered:
    """Where a method is defined, and the distributions it imports beyond torch and transformers
    (their pip names: records name their versions, the memory gate watches them, `harness.py
    list` names their licences). Said here, so that knowing them imports none of them."""

    module: str
    attribute: str
    packages: tuple[str, ...] = ()


BITSANDBYTES = ("bitsandbytes",)
REGISTERED = {
    "full": Registered("methods.full", "METHOD"),
    "adam8bit": Registered("methods.adam8bit", "METHOD", BITSANDBYTES),
    "lora": Registered("methods.lora", "METHOD", ("peft",)),
    "relora": Registered("methods.relora", "METHOD", ("peft",)),
    "low_rank": Registered("methods.low_rank", "METHOD"),
    "galore": Registered("methods.galore", "GALORE"),
    "galore8bit": Registered("methods.galore", "GALORE_8BIT", BITSANDBYTES),
    "galore_layerwise": Registered("methods.galore", "GALORE_LAYERWISE"),
    "galore8bit_layerwise": Registered("methods.galore", "GALORE_8BIT_LAYERWISE", BITSANDBYTES),
    "galore_ref": Registered("methods.galore", "GALORE_REFERENCE", ("galore-torch",)),
    "full_layerwise": Registered("methods.layerwise", "FULL_METHOD"),
    "adam8bit_layerwise": Registered("methods.layerwise", "ADAM8BIT_METHOD", BITSANDBYTES),
    "apollo": Registered("methods.apollo", "APOLLO", ("apollo-torch",)),
    "apollo_mini": Registered("methods.apollo", "APOLLO_MINI", ("apollo-torch",)),
    "apollo_layerwise": Registered("methods.apollo", "APOLLO_LAYERWISE", ("apollo-torch",)),
    "adam_mini": Registered("methods.adam_mini", "METHOD", ("adam-mini",)),
    "fira": Registered("methods.fira", "METHOD", ("fira",)),
    "torchao_adamw8bit": Registered("methods.torchao_lowbit", "ADAMW_8BIT", ("torchao",)),
    "torchao_adamw4bit": Registered("methods.torchao_lowbit", "ADAMW_4BIT", ("torchao",)),
    "q_galore": Registered("methods.q_galore", "METHOD", BITSANDBYTES),
    "dora": Registered("methods.lora_variants", "DORA", ("peft",)),
    "pissa": Registered("methods.lora_variants", "PISSA", ("peft",)),
    "qlora": Registered("methods.qlora", "METHOD", ("peft", "bitsandbytes")),
    "muon": Registered("methods.muon", "METHOD"),
    "lisa": Registered("methods.lisa", "METHOD"),
    "badam": Registered("methods.badam", "METHOD", ("badam",)),
    "lomo": Registered("methods.lomo", "LOMO", ("lomo-optim",)),
    "adalomo": Registered("methods.lomo", "ADALOMO", ("lomo-optim",)),
    "paged_adam8bit": Registered("methods.paged_adam8bit", "METHOD", BITSANDBYTES),
    "cpu_offload_adamw": Registered("methods.cpu_offload", "METHOD", ("torchao",)),
}
"""Every method by name, in the order `harness.py list` and `--method all` take them."""


class _Methods(Mapping):
    """Name -> Method, each method's module imported when the method is first looked up: a run
    or an estimate of one method does not pay for the imports of the thirty (bitsandbytes alone
    takes seconds: its kernels are torch.compile'd at import)."""

    def __getitem__(self, name: str) -> Method:
        registered = REGISTERED[name]
        return getattr(importlib.import_module(registered.module), registered.attribute)

    def __contains__(self, name) -> bool:
        return name in REGISTERED

    def __iter__(self):
        return iter(REGISTERED)

    def __len__(self) -> int:
        return len(REGISTERED)


METHODS = _Methods()


def modules_of(names) -> list[str]:
    """What the methods `names` import on first use, each once: their own modules and their
    packages (each distribution's import name is its pip name with "-" as "_": the registry
    contract test imports every one)."""
    modules = []
    for name in names:
        registered = REGISTERED[name]
        modules += [registered.module, *(package.replace("-", "_") for package in registered.packages)]
    return list(dict.fromkeys(modules))


def preload(names):
    """Import modules_of(names) in this process, so that every process forked from it (a fit's
    searches, a trace's probes) finds them imported instead of importing them itself: each of
    bitsandbytes, peft, badam, galore-torch and apollo-torch takes a second or more."""
    for module in modules_of(names):
        importlib.import_module(module)


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
