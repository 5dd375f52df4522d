"""Precision policies: in which dtype a run keeps its weights and optimizer state, and in which
it computes the forward and backward. The names are Lightning's (its Trainer(precision=...)):

  bf16-true   weights, gradients, optimizer state and compute all BF16 (the GaLore paper's runs)
  bf16-mixed  FP32 weights (the parameters are the master copy) and FP32 optimizer state; the
              forward and backward run under torch.autocast in BF16
  32-true     FP32 throughout
  16-mixed    as bf16-mixed with FP16 autocast, and a GradScaler that scales the loss so that
              FP16 gradients do not underflow; CUDA only (where FP16 autocast and the scaler's
              kernels are the ones users train with)
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    """One policy; see the module docstring."""

    name: str
    weight_dtype: torch.dtype
    """Of the parameters, and so of their gradients and the optimizer state torch keeps like them."""
    autocast_dtype: torch.dtype | None = None
    """The forward's and backward's compute dtype under torch.autocast; None: no autocast."""
    grad_scaler: bool = False
    """The loss is scaled by a torch.amp.GradScaler, which unscales before the optimizer steps."""
    cuda_only: bool = False
    """A run on another device is refused before it starts."""

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the matmuls run in: autocast's, else the weights'."""
        return self.autocast_dtype or self.weight_dtype


PRECISIONS = {
    "bf16-true": Precision("bf16-true", torch.bfloat16),
    "bf16-mixed": Precision("bf16-mixed", torch.float32, autocast_dtype=torch.bfloat16),
    "32-true": Precision("32-true", torch.float32),
    "16-mixed": Precision("16-mixed", torch.float32, autocast_dtype=torch.float16, grad_scaler=True, cuda_only=True),
}
DTYPE_ALIASES = {"bf16": "bfloat16", "fp32": "float32"}
"""Other spellings of a dtype, accepted wherever one is typed; the canonical name is stored."""
PRECISION_OF_DTYPE = {"bfloat16": "bf16-true", "float32": "32-true"}
"""The policy a dtype alone names: its weights in that dtype, no autocast."""
PRECISION_ALIASES = {**{alias: PRECISION_OF_DTYPE[dtype] for alias, dtype in DTYPE_ALIASES.items()},
                     **PRECISION_OF_DTYPE}
"""A dtype typed where a precision is asked for names its pure policy (bf16: bf16-true, not
Lightning's bf16-mixed: the suite's dtype bf16 has always meant BF16 weights)."""


def precision_name(typed: str) -> str:
    """The policy's name for what was typed (a policy, or a dtype or its alias)."""
    return PRECISION_ALIASES.get(typed, typed)
