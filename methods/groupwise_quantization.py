"""Group-wise asymmetric integer quantization, as Q-GaLore's reference code stores its INT8
weights and INT4 projectors: each run of `group_size` consecutive elements (row-major) gets a
scale s = (max - min) / (2^bits - 1) and an integer zero point z = clamp(-round(min / s)), and
an element x is kept as the code q = clamp(round(x / s) + z, 0, 2^bits - 1); x ≈ (q - z) s.

Rounding is to nearest, or stochastic (Q-GaLore's unbiased rounding of the updated weights:
x / s rounds up with probability its fractional part, so the expected code is exact and
updates smaller than a level are kept on average instead of always rounded away).

A tensor whose size is not a multiple of the group size has a last, shorter group: it is padded
with copies of its last element, which leave that group's min and max unchanged.
"""

import torch

MIN_SCALE = 1e-5
"""The reference's floor on a group's scale, so that a constant group does not divide by zero."""


def _groups(flat: torch.Tensor, group_size: int) -> torch.Tensor:
    padding = -flat.numel() % group_size
    if padding:
        flat = torch.cat([flat, flat[-1:].expand(padding)])
    return flat.view(-1, group_size)


def group_count(numel: int, group_size: int) -> int:
    """Groups, hence scales and zero points, of a tensor of `numel` elements."""
    return -(-numel // group_size)


def quantize(values: torch.Tensor, bits: int, group_size: int, scale_dtype: torch.dtype,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes as uint8 in values' shape, scales, zero points), scales and zero points of shape
    (groups, 1) in scale_dtype. Rounds stochastically with `generator`, else to nearest."""
    groups = _groups(values.reshape(-1), group_size)
    low, high = groups.amin(dim=1, keepdim=True), groups.amax(dim=1, keepdim=True)
    levels = 2**bits - 1
    # The stored scale is the one rounding divides by, so that dequantizing inverts it exactly.
    scales = ((high - low).clamp(min=MIN_SCALE) / levels).to(scale_dtype)
    scaled = groups / scales.to(groups.dtype)
    zeros = (-(low / scales.to(groups.dtype)).round()).clamp_(0, levels)
    if generator is None:
        rounded = scaled.round_()
    else:
        below = scaled.floor()
        # Up with probability x - floor(x): E[rounded] = x (the reference's stochastic rounding).
        up = torch.rand(scaled.shape, generator=generator, device=scaled.device, dtype=scaled.dtype) < scaled - below
        rounded = below.add_(up)
    codes = rounded.add_(zeros).clamp_(0, levels).to(torch.uint8)
    return codes.view(-1)[: values.numel()].view(values.shape), scales, zeros.to(scale_dtype)


def dequantize(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int,
               dtype: torch.dtype) -> torch.Tensor:
    """(codes - zeros) * scales, in `dtype` and codes' shape."""
    values = _groups(codes.reshape(-1).to(dtype), group_size)
    values.sub_(zeros.to(dtype)).mul_(scales.to(dtype))
    return values.view(-1)[: codes.numel()].view(codes.shape)


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """4-bit codes (uint8 holding 0..15), two to a byte: ceil(n / 2) bytes, flat."""
    flat = codes.reshape(-1)
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    pairs = flat.view(-1, 2)
    return pairs[:, 0] | (pairs[:, 1] << 4)


def unpack_int4(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The uint8 codes pack_int4 packed, in `shape`."""
    numel = 1
    for side in shape:
        numel *= side
    codes = torch.stack([packed & 15, packed >> 4], dim=1).view(-1)
    return codes[:numel].view(shape)
