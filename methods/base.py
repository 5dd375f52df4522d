"""The method contract: a method turns a model into something trainable; and the parts
methods share (AdamW and 8-bit AdamW and the param groups they decay, the schedule, picking
Linear layers by name), each following the run's conventions where ours and Hugging Face's differ."""

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from core.options import parse_options
from core.spec import RunSpec
from methods.blocks import block_linear_names


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
    grad_scaler: torch.amp.GradScaler | None = None
    """Under precision 16-mixed, the GradScaler the loop scales the loss by and steps the optimizer
    through; set by the loop from the spec's precision, never by a method."""
    is_refresh_step: Callable[[int], bool] | None = None
    """For a method that recomputes part of its state every few steps (GaLore's projectors,
    from an SVD of each gradient; ReLoRA's merge of the factors into the weights): whether the
    0-based step does, so that memory figures give those steps' peak apart from the steady
    state's."""


@dataclass(frozen=True)
class Method:
    """A registered method: its name, options dataclass and the function that prepares a model."""

    name: str
    """The name suites and run specs use, e.g. "galore8bit_layerwise"."""
    prepare: Callable
    """prepare(model, spec, options, workload) -> Training: `options` is an instance of
    `options` parsed from spec.method_options, `workload` the run's registered workload."""
    options: type
    """Frozen dataclass of the method's options, every field with a default and a docstring."""
    summary: str
    """One line for `harness.py list`."""
    svd_rank: bool = False
    """Its optimizer groups' "rank" is that of an SVD of each weight's gradient, so it can be at
    most the weight's smaller side; a larger one is refused before any run (training/preflight.py)."""
    fsdp2: bool = False
    """It trains under sharding = "fsdp2" (each rank holds a shard of every weight, as a DTensor);
    the others are refused before the run (methods/__init__.py says why, per family)."""
    rank: Callable | None = None
    """rank(options, spec) -> the rank it trains at, its default resolved (a low-rank method);
    None for full-rank methods. Records carry it, typed, for reports to key rows on."""
    cuda_only: bool = False
    """It trains on CUDA devices only (its package moves tensors between the GPU and the host): a
    run on another device is refused before it starts (training/preflight.py); a traced estimate,
    which assumes CUDA, still runs, and the CPU memory gate has only that of it."""
    notes: Callable[[str], tuple[str, ...]] | None = None
    """notes(where) -> lines the record says about how the method ran, `where` being the device
    type of a run ("cpu", "cuda") or "traced" (a traced estimate, CUDA assumed): a package feature
    that does not exist there, a part an estimate leaves out. Records carry them in `notes`."""

    def parse_options(self, values: dict):
        """The options dataclass; an OptionError names any key or value it does not accept."""
        return parse_options(self.options, values)

    def notes_for(self, where: str) -> list[str]:
        """The method's notes for a run on device type `where`, or for "traced"; none by default."""
        return list(self.notes(where)) if self.notes else []

    def rank_of(self, spec: RunSpec) -> int | None:
        """The rank the spec trains at, None for a full-rank method."""
        return None if self.rank is None else self.rank(self.parse_options(spec.method_options), spec)


def options_rank(options, spec) -> int:
    """Method.rank of a method whose options name the rank it trains at."""
    return options.rank


@dataclass(frozen=True)
class NoOptions:
    """For methods that take no options."""


def weight_decay_groups(model: torch.nn.Module, parameters: list[torch.nn.Parameter], spec: RunSpec) -> list[dict]:
    """`parameters` (some of `model`'s) as an AdamW-family optimizer's param groups. Conventions
    "reference": one group, every tensor decayed (the GaLore reference's AdamW). "hf": as
    transformers' Trainer.create_optimizer groups them, the tensors it decays and a group of the
    rest (norms, biases) at weight decay 0."""
    if spec.conventions == "reference":
        return [{"params": parameters}]
    # Imported here: transformers' trainer pulls in accelerate, which reference runs never need.
    from transformers import Trainer

    # The Trainer's own rule (layer types and name patterns); it reads nothing of the Trainer,
    # so it runs without one. Tied weights count once, under their first name, as there.
    decayed_names = set(Trainer.get_decay_parameter_names(None, model))
    decayed_ids = {id(p) for name, p in model.named_parameters() if name in decayed_names}
    groups = [
        {"params": [p for p in parameters if id(p) in decayed_ids]},
        {"params": [p for p in parameters if id(p) not in decayed_ids], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def adamw(param_groups: list[dict], spec: RunSpec) -> torch.optim.AdamW:
    """torch AdamW at the spec's lr and weight decay, on its fastest path for the device."""
    on_cuda = param_groups[0]["params"][0].is_cuda
    # fused is the fastest AdamW on CUDA; on CPU foreach is the multi-tensor path.
    return torch.optim.AdamW(
        param_groups, lr=spec.lr, weight_decay=spec.weight_decay, fused=on_cuda, foreach=not on_cuda
    )


def adamw8bit(param_groups: list[dict], spec: RunSpec):
    """bitsandbytes' AdamW8bit (blockwise 8-bit moments) at the spec's lr and weight decay."""
    import bitsandbytes  # here, not at the top: it takes seconds, and most methods never use it
    return bitsandbytes.optim.AdamW8bit(param_groups, lr=spec.lr, weight_decay=spec.weight_decay)


def linear_layers(model: torch.nn.Module, suffixes) -> dict[str, torch.nn.Linear]:
    """name -> module of the Linear layers named one of `suffixes` or ending in "." plus one of them."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and any(name == s or name.endswith("." + s) for s in suffixes)
    }


def hf_target_layers(model: torch.nn.Module, target_modules) -> dict[str, torch.nn.Linear]:
    """name -> module of the Linear layers transformers' Trainer projects for optim_target_modules
    (its check_target_module_exists): a name equal to one of them, containing one, or matching
    one as a whole regex, so that ("attn", "mlp") takes every attention and MLP Linear."""
    from transformers.trainer_utils import check_target_module_exists

    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and check_target_module_exists(list(target_modules), name)
    }


def projected_and_plain(model: torch.nn.Module, target_modules, workload, conventions: str) -> tuple[list, list]:
    """The trainable weights of the Linear layers named by target_modules (None: the attention and
    MLP Linears of the model's repeated layers, methods/blocks.py), which projection methods
    project, and every other trainable parameter. Names match by suffix (conventions "reference",
    as peft's target_modules) or as Hugging Face's Trainer matches optim_target_modules ("hf")."""
    targets = target_modules or block_linear_names(model)
    layers = linear_layers(model, targets) if conventions == "reference" else hf_target_layers(model, targets)
    projected = [layer.weight for layer in layers.values() if layer.weight.requires_grad]
    if not projected:
        raise ValueError(f"options.target_modules {list(targets)} matches no Linear layer of the model")
    projected_ids = {id(p) for p in projected}
    return projected, [p for p in model.parameters() if p.requires_grad and id(p) not in projected_ids]


def projection_weight_decay(spec: RunSpec, hf_default: float) -> float:
    """The weight decay a GaLore-family optimizer is built with: the spec's; under conventions
    "hf" `hf_default`, the optimizer class's own default, because transformers' Trainer builds
    galore_* and apollo_* optimizers from the lr alone and its weight_decay never reaches them."""
    return hf_default if spec.conventions == "hf" else spec.weight_decay


MIN_LR_RATE = 0.1
"""The cosine decays to this fraction of the peak lr."""


def warmup_cosine_multiplier(step: int, warmup_steps: int, total_steps: int) -> float:
    """The lr multiplier after `step` optimizer steps: linear warm-up, then cosine decay to
    MIN_LR_RATE. Computed in the order of transformers' get_cosine_with_min_lr_schedule_with_warmup,
    so that every lr is that schedule's to the bit (tests/methods/test_schedule.py); ours, because
    importing transformers.optimization imports peft, seconds for every process."""
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
    factor = 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress))
    return max(0, factor * (1 - MIN_LR_RATE) + MIN_LR_RATE)


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, spec: RunSpec) -> torch.optim.lr_scheduler.LambdaLR:
    """The paper's schedule: linear warm-up over the run's warm-up fraction, then cosine decay to
    10% of the peak lr at its last step."""
    multiplier = partial(warmup_cosine_multiplier, warmup_steps=int(spec.warmup_fraction * spec.steps),
                         total_steps=spec.steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
