"""CPU-offloaded AdamW: torchao's CPUOffloadOptimizer, the optimizer state and its step on the host.

torchao keeps, for each trainable tensor of at least minimal_size elements, a pinned host copy
of the parameter and of its gradient and a torch AdamW over the host copy (its moments on the
host); a post-accumulate-grad hook copies each gradient to the host as the backward produces
it (and, with offload_gradients, frees the device gradient at once), and its step runs AdamW
on the host and copies each updated parameter back. Smaller tensors keep an AdamW on the
device. The device then holds weights, gradients (none with offload_gradients) and activations.

One process only: its hook copies each gradient to the host as the backward accumulates it,
before DDP's all-reduce has averaged it, so several ranks are refused before the run.

CUDA only: torchao asserts a CUDA (or XPU) device and streams. A run on another device is
refused before it starts (training/preflight.py, Method.cuda_only), and prepare() refuses real
CPU tensors too, for callers of train() that skip the preflight.

The traced estimate (fake CPU tensors, CUDA assumed) must give device bytes. torchao cannot be
built there (no CUDA streams), so the trace runs its device side only (DeviceSideOfOffload):
the same split by minimal_size, the on-device AdamW of the small tensors, the device gradients
freed in the hook when offload_gradients; the host copies, host gradients and host moments are
not traced at all (they are host memory, not device bytes), and the estimate's notes say so. A
real CUDA run's tracker, which counts live tensors on every device, counts them too (the host
moments under optimizer_state): its CUDA max_memory_allocated is the device figure.
"""

from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import is_fake
from torchao.optim import CPUOffloadOptimizer

from methods.base import Method, Training, adamw, warmup_cosine_schedule, weight_decay_groups

NOTES = {
    "traced": ("cpu_offload_adamw: only the device side is traced (the AdamW of tensors under minimal_size, "
               "gradients); the host side of torchao's CPUOffloadOptimizer (per offloaded tensor a pinned copy of the "
               "parameter and of its gradient, and AdamW's two moments, in the parameter's dtype) is host memory, "
               "not counted",),
    "cuda": ("cpu_offload_adamw: the tracker counts the host side too (pinned parameter and gradient copies, AdamW "
             "moments on the host); cuda_max_allocated_bytes is the device's figure",),
}
"""What each kind of record says about the host side (Method.notes)."""


@dataclass(frozen=True)
class CPUOffloadOptions:
    offload_gradients: bool = False
    """Free each device gradient once it is copied to the host (torchao's offload_gradients):
    no gradients stay on the device; it cannot accumulate gradients, so grad_accum > 1 is refused."""
    minimal_size: int = 4096
    """Tensors of fewer elements keep their AdamW on the device (torchao's default: 4096)."""

    def __post_init__(self):
        if self.minimal_size < 1:
            raise ValueError(f"options.minimal_size = {self.minimal_size} must be at least 1 element")


class CPUOffloadAdamW(CPUOffloadOptimizer):
    """torchao's CPUOffloadOptimizer over torch AdamW, with the `state` that torch optimizers have
    and torchao's lacks (it never calls Optimizer.__init__): the device AdamW's and the host
    AdamWs', keyed by device parameter, for the tracker and the record's optimizer_state_bytes."""

    @property
    def state(self) -> dict:
        merged = dict(self.d_opt.state) if self.d_opt is not None else {}
        for p_device, host_optimizer in self.optim_dict.items():
            p_host = self.param_d2h_map[p_device]
            if p_host in host_optimizer.state:
                merged[p_device] = host_optimizer.state[p_host]
        return merged


class DeviceSideOfOffload(torch.optim.Optimizer):
    """What a traced estimate runs in CPUOffloadOptimizer's place: its device side only (see the
    module's docstring). The host step copies each updated parameter back in place, which
    allocates nothing on the device, so it is left out."""

    def __init__(self, param_groups: list[dict], spec, options: CPUOffloadOptions):
        on_device = [{**group, "params": [p for p in group["params"] if p.numel() < options.minimal_size]}
                     for group in param_groups]
        on_device = [group for group in on_device if group["params"]]
        self.device_optimizer = adamw(on_device, spec) if on_device else None
        super().__init__([p for group in param_groups for p in group["params"]], {"lr": spec.lr})
        if self.device_optimizer is not None:
            self.state = self.device_optimizer.state
        if options.offload_gradients:
            for group in param_groups:
                for p in group["params"]:
                    if p.numel() >= options.minimal_size:
                        p.register_post_accumulate_grad_hook(_free_gradient)

    @torch.no_grad()
    def step(self, closure=None):
        if self.device_optimizer is not None:
            self.device_optimizer.step()


def _free_gradient(parameter: torch.Tensor):
    parameter.grad = None  # torchao frees it once its copy to the host is done


def prepare(model, spec, options: CPUOffloadOptions, workload) -> Training:
    if spec.world_size > 1:
        raise ValueError(f"method {spec.method} trains on one process only: torchao's CPUOffloadOptimizer copies each "
                         "gradient to the host as it is accumulated, before DDP has averaged it over the ranks; "
                         "set nproc = 1 and nnodes = 1")
    if options.offload_gradients and spec.grad_accum > 1:
        raise ValueError(f"method {spec.method}: options.offload_gradients frees each gradient as soon as it is "
                         f"copied to the host, so grad_accum = {spec.grad_accum} cannot accumulate; set grad_accum = 1 "
                         "or offload_gradients = false")
    parameters = [p for p in model.parameters() if p.requires_grad]
    groups = weight_decay_groups(model, parameters, spec)
    traced_or_preflight = is_fake(parameters[0]) or parameters[0].is_meta
    if traced_or_preflight:
        optimizer = DeviceSideOfOffload(groups, spec, options)
    elif parameters[0].device.type != "cuda":
        raise ValueError(f"method {spec.method} trains on CUDA devices only (torchao's CPUOffloadOptimizer moves "
                         f"tensors between the GPU and the host); this run's device is {parameters[0].device.type}")
    else:
        optimizer = CPUOffloadAdamW(groups, torch.optim.AdamW, offload_gradients=options.offload_gradients,
                                    minimal_size=options.minimal_size, lr=spec.lr, weight_decay=spec.weight_decay)
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


METHOD = Method("cpu_offload_adamw", prepare, CPUOffloadOptions,
                "torchao CPUOffloadOptimizer: AdamW state and step on the host (CUDA only)",
                cuda_only=True, notes=lambda where: NOTES.get(where, ()))
