"""Q-GaLore (Zhang et al., 2024, arXiv 2407.08296): GaLore with INT8 weights, INT4 projectors
and a lazy, layer-adaptive projector refresh.

Our own implementation, read from the reference code (VITA-Group/Q-GaLore,
q_galore_torch/): the package q-galore-torch 1.0 fails on bitsandbytes 0.50 (its step reads the
config key percentile_clipping, which bitsandbytes no longer has: the README), and its optimizer
calls torch.cuda.synchronize() after every parameter's update, so it could not step on CPU anyway.

What is trained, as the reference's q_galore_adamw8bit:
  - The projected Linear layers (the attention and MLP Linears of the model's repeated layers) hold their weights as
    INT8 codes with a scale and a zero point per 256 elements (methods/int8_linear.py). Each
    step: G (the gradient of the dequantized weight) is projected, R = Pᵀ G or G Q, by the
    dequantized INT4 projector; bitsandbytes' 8-bit blockwise Adam gives the normalized
    low-rank update N; W = dequantize(codes) + α · back(N) (back: P N or N Q, −lr included),
    weight decay applied full-rank; then W is quantized back with stochastic rounding.
  - The projector comes from the SVD of G (methods/galore_projector.py) and is stored as 4-bit
    codes, packed two to a byte (the reference keeps one 4-bit value per uint8), with a scale
    and zero point per 256 elements in the weights' dtype.
  - Lazy refresh: at each refresh the cosine similarity between the first singular vector of
    the new projector and that of the previous one is queued (the last queue_size = 5 kept);
    once the queue is full and its mean is at least cos_threshold = 0.4, that layer's gap T is
    multiplied by gamma_proj = 2. The queue is not cleared, so a layer whose subspace stays put
    doubles its gap at every later refresh (0, T, ..., 5T, then 7T, 11T, ...), and one whose
    subspace keeps moving keeps refreshing every T. This is the reference's
    GaLoreProjector.project, line for line in its logic; the cosine is signed, as there, so a
    layer whose SVD returns its settled vector with the other sign reads -1 and keeps refreshing.
  - Every other parameter (embeddings, norms, LM head) gets the same 8-bit Adam, as in the
    reference's single AdamW8bit (tensors under 4096 elements keep 32-bit moments, as in
    bitsandbytes).

Where we differ from the reference: the update and the stochastic rounding run in float32 (the
reference rounds x / s in the weights' dtype, which in bfloat16 has no fractional bits left for
codes above 128, so stochastic rounding degenerates there); the rounding draws from a generator
seeded from the run's seed, the parameter and the step, so that every rank rounds alike and a
resumed run rounds as the uninterrupted one did. Under DDP each rank's int8 gradients are
averaged by an all-reduce in the step (DDP sees only parameters that require grad), as the
reference all-gathers them.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist

from methods.base import Method, Training, projected_and_plain, warmup_cosine_schedule
from methods.galore_adamw8bit import GaLoreAdamW8bit
from methods.galore_projector import (
    add_projected_back,
    check_projection_options,
    galore_rank,
    project,
    refresh_projector,
)
from methods.groupwise_quantization import dequantize, pack_int4, quantize, unpack_int4
from methods.int8_linear import Int8Linear

PROJECTOR_BITS = 4
"""The paper's INT4 projectors (the reference's --proj_bits default)."""
PROJ_TYPES = ("std", "reverse_std", "left", "right")
"""One-sided projections only: the reference implements std alone, and its refresh rule follows one projector."""


@dataclass(frozen=True)
class QGaLoreOptions:
    """Defaults are the reference's (run_pretrain.py and its C4 scripts) unless said otherwise."""

    rank: int | None = None
    """Projection rank r; None takes the model size's galore_rank from workloads/sizes.toml."""
    update_proj_gap: int = 200
    """T: each layer's projector is first recomputed every T steps, step 0 included (the 60M-1B scripts' 200)."""
    scale: float = 0.25
    """α: the projected-back update is scaled by it (the scripts' galore_scale)."""
    proj_type: str = "std"
    """std (project the smaller side), reverse_std, left or right."""
    target_modules: tuple[str, ...] | None = None
    """Module-name suffixes of the Linear layers to quantize and project (conventions "hf": names,
    substrings or regexes, as transformers' optim_target_modules); None takes the attention and MLP Linears of the model's repeated layers."""
    weight_group_size: int = 256
    """Elements per scale and zero point of the INT8 weights."""
    projector_group_size: int = 256
    """Elements per scale and zero point of the INT4 projectors."""
    stochastic_round: bool = True
    """Quantize updated weights back with stochastic rounding (False: to nearest, which loses
    every update smaller than half a level)."""
    cos_threshold: float = 0.4
    """A layer's gap grows once the mean cosine similarity of its last queue_size projectors' first
    singular vectors, each with the one before, is at least this."""
    gamma_proj: int = 2
    """The factor a layer's gap is multiplied by when it grows."""
    queue_size: int = 5
    """How many consecutive refreshes' cosine similarities are averaged."""

    def __post_init__(self):
        check_projection_options(self.rank, self.update_proj_gap, "std", ("scale", self.scale))
        if self.proj_type not in PROJ_TYPES:
            raise ValueError(f"options.proj_type {self.proj_type!r} is not known; accepted: {', '.join(PROJ_TYPES)}")
        for name in ("weight_group_size", "projector_group_size", "gamma_proj", "queue_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"options.{name} = {getattr(self, name)!r}; accepted: an integer of at least 1")
        if not -1.0 <= self.cos_threshold <= 1.0:
            raise ValueError(f"options.cos_threshold = {self.cos_threshold!r} is a cosine; accepted: -1 to 1")


class QGaLoreAdamW8bit(GaLoreAdamW8bit):
    """GaLoreAdamW8bit whose projected parameters are Int8Linear codes: see the module docstring.
    `refreshed_at` collects the (0-based) steps in which any layer recomputed its projector."""

    def __init__(self, param_groups: list[dict], layers: list[Int8Linear], lr: float, weight_decay: float, seed: int):
        super().__init__(param_groups, lr=lr, weight_decay=weight_decay)
        self.layer_of = {layer.weight: layer for layer in layers}
        self.seed = seed
        self.refreshed_at: set[int] = set()

    def _step_group(self, group: dict):
        for index, p in enumerate(group["params"]):
            if p in self.layer_of:
                if getattr(p, "float_grad", None) is not None:
                    self._step_quantized(group, index, p)
            elif p.grad is not None:
                self._step_parameter(group, p)

    def _step_quantized(self, group: dict, index: int, p: torch.Tensor):
        layer, state = self.layer_of[p], self.state[p]
        grad = _averaged_across_ranks(p.float_grad)
        step = state.get("step", 0)
        if step % state.setdefault("update_proj_gap", group["update_proj_gap"]) == 0:
            self._refresh(state, grad, group)
            self.refreshed_at.add(step)
        projector = _dequantized_projector(state, grad.dtype, group["projector_group_size"])
        low_rank_grad = project(projector, grad)
        if step == 0:
            self._init_moments(state, low_rank_grad, whole_numel=low_rank_grad.numel())
        state["step"] = step + 1
        low_rank_step = torch.zeros_like(low_rank_grad)
        self._adam_kernel(group, state, low_rank_grad, low_rank_step, weight_decay=0.0)
        del low_rank_grad

        weight = layer.dequantized(torch.float32)
        add_projected_back(weight, {side: matrix.float() for side, matrix in projector.items()}, low_rank_step.float(),
                           alpha=group["scale"])
        if group["weight_decay"] > 0.0:
            weight.mul_(1.0 - group["lr"] * group["weight_decay"])
        layer.requantize(weight, self._rounding_generator(index, step, weight.device) if group["stochastic_round"]
                         else None)

    def _refresh(self, state: dict, grad: torch.Tensor, group: dict):
        """A new INT4 projector from the SVD of grad, and the layer's gap grown where its
        subspace has settled (the module docstring)."""
        fresh = {}
        refresh_projector(fresh, grad, group["rank"], group["proj_type"])
        (side, projector), = fresh.items()
        # The first singular vector: the first row of Q (r x n), the first column of P (m x r).
        first = (projector[0] if side == "projector_right" else projector[:, 0]).clone()
        if "first_vector" in state:
            history = state["cosine_history"]
            if len(history) == group["queue_size"]:
                history.pop(0)
            history.append(torch.nn.functional.cosine_similarity(state["first_vector"], first, dim=0).item())
            if len(history) == group["queue_size"] and sum(history) / len(history) >= group["cos_threshold"]:
                state["update_proj_gap"] *= group["gamma_proj"]
        else:
            state["cosine_history"] = []
        state["first_vector"] = first
        state["svd_count"] = state.get("svd_count", 0) + 1  # the reference's svd_count
        codes, scales, zeros = quantize(projector, PROJECTOR_BITS, group["projector_group_size"], projector.dtype)
        state["projector_side"], state["projector_shape"] = side, tuple(projector.shape)
        state["projector_codes"], state["projector_scales"], state["projector_zeros"] = pack_int4(codes), scales, zeros

    def _rounding_generator(self, index: int, step: int, device: torch.device) -> torch.Generator:
        # The same seed on every rank and on resume: the rounding is a function of the run's
        # seed, the parameter and the step.
        generator = torch.Generator(device=device)
        generator.manual_seed((self.seed * 1_000_003 + index) * 1_000_003 + step)
        return generator

    def zero_grad(self, set_to_none: bool = True):
        for p in self.layer_of:
            p.float_grad = None
        super().zero_grad(set_to_none=set_to_none)


def _dequantized_projector(state: dict, dtype: torch.dtype, group_size: int) -> dict[str, torch.Tensor]:
    """The projector as galore_projector's project and add_projected_back take it."""
    codes = unpack_int4(state["projector_codes"], state["projector_shape"])
    matrix = dequantize(codes, state["projector_scales"], state["projector_zeros"], group_size, dtype)
    return {state["projector_side"]: matrix}


def _averaged_across_ranks(grad: torch.Tensor) -> torch.Tensor:
    """The gradient averaged over the ranks, in place, as DDP averages the others."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(grad)
        grad.div_(dist.get_world_size())
    return grad


def quantize_layers(model: torch.nn.Module, weights: list[torch.nn.Parameter], group_size: int) -> list[Int8Linear]:
    """Replace the Linear layers owning `weights` by Int8Linear layers; the new layers."""
    ids = {id(w) for w in weights}
    names = [name for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and id(module.weight) in ids]
    layers = []
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layers.append(Int8Linear(getattr(parent, child), group_size))
        setattr(parent, child, layers[-1])
    return layers


def refuse_grad_clip(spec):
    if spec.grad_clip > 0:
        raise ValueError(
            f"method {spec.method}: grad_clip = {spec.grad_clip} cannot be honoured: the INT8 weights' gradients live "
            "beside them (torch refuses a float .grad on an integer tensor), out of clip_grad_norm_'s reach; "
            "set grad_clip = 0"
        )


def prepare(model, spec, options: QGaLoreOptions, workload) -> Training:
    refuse_grad_clip(spec)
    projected, plain = projected_and_plain(model, options.target_modules, workload, spec.conventions)
    layers = quantize_layers(model, projected, options.weight_group_size)
    settings = {
        "rank": galore_rank(options, spec),
        "update_proj_gap": options.update_proj_gap,
        "scale": options.scale,
        "proj_type": options.proj_type,
        "projector_group_size": options.projector_group_size,
        "stochastic_round": options.stochastic_round,
        "cos_threshold": options.cos_threshold,
        "gamma_proj": options.gamma_proj,
        "queue_size": options.queue_size,
    }
    groups = [{"params": plain}, {"params": [layer.weight for layer in layers], **settings}]
    optimizer = QGaLoreAdamW8bit(groups, layers, lr=spec.lr, weight_decay=spec.weight_decay, seed=spec.seed)
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec),
                    is_refresh_step=lambda step: step in optimizer.refreshed_at)


METHOD = Method(
    "q_galore", prepare, QGaLoreOptions, "Q-GaLore: INT8 weights, INT4 projectors, lazy layer-wise refresh, 8-bit Adam",
    svd_rank=True, rank=galore_rank,
)
