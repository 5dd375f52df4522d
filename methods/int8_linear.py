"""A Linear layer whose weight is stored as INT8 codes with group-wise scales and zero points
(Q-GaLore's weights), dequantized for the forward and again for the backward.

torch lets no integer tensor require a gradient or hold a float .grad, so the codes, scales
and zero points are parameters with requires_grad False (the tracker counts them as frozen
weights, the bytes they are), and the backward accumulates the weight's gradient into the
codes' `float_grad` attribute, as the reference does; the optimizer (methods/q_galore.py)
reads it there, steps, and re-quantizes the weight in place.
"""

import torch

from methods.groupwise_quantization import dequantize, quantize

WEIGHT_BITS = 8
"""The reference's only weight width (its QGaLoreLinear refuses any other)."""


class _Int8Matmul(torch.autograd.Function):
    """y = x Wᵀ + b with W dequantized from the layer's codes; only x is saved for backward."""

    @staticmethod
    def forward(ctx, x, layer, bias):
        # Under autocast (precision bf16-mixed) the matmuls run in autocast's dtype, as a Linear's
        # would; the backward, which autocast does not reach, then finds x in it too.
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        x = x.to(dtype)
        ctx.layer = layer
        ctx.save_for_backward(x)
        with torch.autocast(device, enabled=False):
            return torch.nn.functional.linear(x, layer.dequantized(dtype), None if bias is None else bias.to(dtype))

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        layer = ctx.layer
        grad_input = grad_output @ layer.dequantized(grad_output.dtype)
        out_features, in_features = layer.weight.shape
        grad_rows, input_rows = grad_output.reshape(-1, out_features), x.reshape(-1, in_features)
        weight = layer.weight
        # Micro-batches accumulate, as autograd accumulates a .grad.
        # In the scales' dtype (the weights' own): FP32 under bf16-mixed, whatever autocast computed in.
        dtype = layer.weight_scales.dtype
        if getattr(weight, "float_grad", None) is None:
            weight.float_grad = (grad_rows.T @ input_rows).to(dtype)
        else:
            weight.float_grad.addmm_(grad_rows.T.to(dtype), input_rows.to(dtype))
        grad_bias = grad_rows.sum(0) if ctx.needs_input_grad[2] else None
        return grad_input, None, grad_bias


class Int8Linear(torch.nn.Module):
    """The Linear layer `linear` with its weight quantized to INT8 (round to nearest, as the
    reference's first quantization) in groups of `group_size`; the bias, if any, stays as it was."""

    def __init__(self, linear: torch.nn.Linear, group_size: int):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.group_size = group_size
        codes, scales, zeros = quantize(linear.weight.detach(), WEIGHT_BITS, group_size, linear.weight.dtype)
        self.weight = torch.nn.Parameter(codes, requires_grad=False)
        self.weight_scales = torch.nn.Parameter(scales, requires_grad=False)
        self.weight_zeros = torch.nn.Parameter(zeros, requires_grad=False)
        self.bias = linear.bias

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight (out x in) in `dtype`."""
        return dequantize(self.weight, self.weight_scales, self.weight_zeros, self.group_size, dtype)

    @torch.no_grad()
    def requantize(self, weight: torch.Tensor, generator: torch.Generator | None):
        """Store `weight` (out x in) in place of the codes, scales and zero points: rounded
        stochastically with `generator`, else to nearest."""
        codes, scales, zeros = quantize(weight, WEIGHT_BITS, self.group_size, self.weight_scales.dtype, generator)
        self.weight.copy_(codes)
        self.weight_scales.copy_(scales)
        self.weight_zeros.copy_(zeros)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Int8Matmul.apply(x, self, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8, group_size={self.group_size}"
