"""GaLore AdamW with bitsandbytes' blockwise 8-bit moments, on CPU and CUDA.

The moments of a projected weight live at the low-rank shape. bitsandbytes' Adam kernel
updates a parameter in place, so it is run on a zero tensor of the low-rank shape: what it
leaves there is the low-rank step, which is projected back into the weight. Unlike
galore-torch's AdamW8bit this never copies the full weight and never synchronizes the device.
"""

import math

import torch

from methods.galore_adamw import GaLoreAdamW
from methods.galore_projector import add_projected_back, low_rank_gradient, low_rank_shape
from methods.row_shards import local

BLOCK_SIZE = 256
"""Elements per absmax scale in bitsandbytes' blockwise optimizer kernels."""


class GaLoreAdamW8bit(GaLoreAdamW):
    """GaLoreAdamW with 8-bit blockwise moments and bitsandbytes' Adam update (its AdamW8bit).

    As in bitsandbytes, moments of tensors under min_8bit_size elements stay 32-bit.
    """

    # eps 1e-8 and min_8bit_size 4096 are bitsandbytes' (and galore-torch's AdamW8bit) defaults.
    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        min_8bit_size: int = 4096,
    ):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.min_8bit_size = min_8bit_size
        self._maps_by_device = {}
        # bitsandbytes is imported when an 8-bit optimizer is built, not with this module: it
        # takes seconds (its CPU kernels are torch.compile'd at import), and GaLore's 32-bit
        # methods, defined beside the 8-bit ones (methods/galore.py), never use it. Its kernels
        # are looked up on the module at each call, where traced estimates replace them.
        import bitsandbytes.functional

        self._bitsandbytes = bitsandbytes.functional

    def _step_parameter(self, group: dict, p: torch.Tensor):
        state = self.state[p]
        step = state.get("step", 0)
        if "rank" not in group:
            # bitsandbytes' kernels take plain tensors: under FSDP2 this rank's shard (a view).
            if step == 0:
                self._init_moments(state, local(p.grad), whole_numel=p.numel())
            state["step"] = step + 1
            self._adam_kernel(group, state, local(p.grad), local(p), group["weight_decay"])
            return

        grad = low_rank_gradient(state, p.grad, step, group)
        if step == 0:
            # Under FSDP2 this rank holds a block of the low-rank gradient; 8-bit or not still
            # follows the whole one's size.
            rows, columns = low_rank_shape(state, p.shape)
            self._init_moments(state, grad, whole_numel=rows * columns)
        state["step"] = step + 1
        low_rank_step = torch.zeros_like(grad)
        self._adam_kernel(group, state, grad, low_rank_step, weight_decay=0.0)
        add_projected_back(p, state, low_rank_step, alpha=group["scale"])
        # Decoupled weight decay, full-rank, after the update (as galore-torch does).
        if group["weight_decay"] > 0.0:
            p.mul_(1.0 - group["lr"] * group["weight_decay"])

    def _init_moments(self, state: dict, like: torch.Tensor, whole_numel: int):
        """Moments shaped as `like`; 8-bit if the whole tensor they are for (`like`, or under
        FSDP2 the one `like` is this rank's shard of) has min_8bit_size elements."""
        if whole_numel < self.min_8bit_size:
            state["state1"] = torch.zeros_like(like, dtype=torch.float32)
            state["state2"] = torch.zeros_like(like, dtype=torch.float32)
            return
        if like.device not in self._maps_by_device:
            # bitsandbytes' dynamic maps: signed for the first moment, unsigned for the second.
            self._maps_by_device[like.device] = tuple(
                self._bitsandbytes.create_dynamic_map(signed=signed).to(like.device) for signed in (True, False))
        blocks = math.ceil(like.numel() / BLOCK_SIZE)
        state["state1"] = torch.zeros_like(like, dtype=torch.uint8)
        state["state2"] = torch.zeros_like(like, dtype=torch.uint8)
        state["absmax1"] = torch.zeros(blocks, dtype=torch.float32, device=like.device)
        state["absmax2"] = torch.zeros(blocks, dtype=torch.float32, device=like.device)
        state["qmap1"], state["qmap2"] = self._maps_by_device[like.device]

    def _adam_kernel(self, group: dict, state: dict, grad: torch.Tensor, target: torch.Tensor, weight_decay: float):
        """bitsandbytes' fused Adam update of target, in place, with this state's moments."""
        beta1, beta2 = group["betas"]
        if state["state1"].dtype == torch.uint8:
            self._bitsandbytes.optimizer_update_8bit_blockwise(
                "adam", grad, target, state["state1"], state["state2"], beta1, beta2, 0.0, 0.0, group["eps"],
                state["step"], group["lr"], state["qmap1"], state["qmap2"], state["absmax1"], state["absmax2"],
                weight_decay=weight_decay,
            )  # fmt: skip
        else:
            self._bitsandbytes.optimizer_update_32bit(
                "adam", grad, target, state["state1"], beta1, group["eps"], state["step"], group["lr"],
                state["state2"], beta2, weight_decay=weight_decay,
            )  # fmt: skip

    def load_state_dict(self, state_dict: dict):
        # torch casts every floating parameter's state to the parameter's dtype: the uint8 codes
        # would become floats, and the float32 scales bf16 for bf16 weights. Put back the saved ones.
        super().load_state_dict(state_dict)
        parameters = [p for group in self.param_groups for p in group["params"]]
        for index, saved in state_dict["state"].items():
            p = parameters[index]
            for key, value in saved.items():
                if isinstance(value, torch.Tensor):
                    self.state[p][key] = value.to(p.device)
