"""Model FLOPs utilization: achieved model FLOPs per second over the device's peak.

The model's FLOPs per token are taken as 6 x parameters (forward 2N, backward 4N; attention's
sequence-dependent FLOPs and LoRA's cheaper frozen-weight backward are left out), the usual
approximation. Peaks are dense (no sparsity) BF16 tensor-core figures from the vendors'
datasheets; a GPU not listed gets no MFU rather than a guess."""

from core.spec import DTYPES

PEAK_BF16_FLOPS = (
    # (substring of torch.cuda.get_device_name, peak FLOP/s); more specific names first.
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("A100", 312e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
)


def peak_bf16_flops(device_name: str | None) -> float | None:
    """The device's dense BF16 peak in FLOP/s, or None for a device not in the table."""
    for name, flops in PEAK_BF16_FLOPS:
        if device_name and name.lower() in device_name.lower():
            return flops
    return None


def parameter_count(weight_bytes: int | None, dtype: str) -> int | None:
    """Parameters from the weights' bytes (trainable and frozen) and the run's parameter dtype."""
    if not weight_bytes:
        return None
    return weight_bytes // DTYPES[dtype].itemsize


def mfu(tokens_per_s: float | None, parameters: int | None, device_name: str | None) -> float | None:
    """Model FLOPs utilization as a fraction (0.4 = 40%), or None when any input is unknown."""
    peak = peak_bf16_flops(device_name)
    if not (tokens_per_s and parameters and peak):
        return None
    return 6 * parameters * tokens_per_s / peak
