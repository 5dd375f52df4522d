"""Peak memory figures of a run, from the counters each device has."""

import resource

import torch

from meters import nvml
from meters.tracker import parameter_tensors, plain_tensors, tensors_within
from results.schema import DeviceFigures, StateFigures


def reset_peaks(device: torch.device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> DeviceFigures:
    """Device counters in bytes; absent counters are None rather than guessed."""
    # The worker process's peak resident set: on CPU it includes the Python and torch
    # libraries (a few hundred MB), so compare methods by difference, not by value.
    figures = DeviceFigures(process_peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if device.type == "cuda":
        figures.cuda_max_allocated_bytes = torch.cuda.max_memory_allocated(device)
        figures.cuda_max_reserved_bytes = torch.cuda.max_memory_reserved(device)
        figures.nvml_process_bytes = nvml.process_memory_bytes(device.index or 0)
    return figures


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind the tensors: memory, not tensor sizes (a view or a
    map shared by every parameter's state, as bitsandbytes' quantization maps are, counts once; a
    DTensor, FSDP2's, by this rank's shard)."""
    plain = [p for tensor in tensors for p in plain_tensors(tensor)]
    by_storage = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in plain}
    return sum(by_storage.values())


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of everything reachable from optimizer.state (projectors and 8-bit scales included)."""
    return storage_bytes(tensors_within(optimizer.state))


def state_bytes(training) -> StateFigures:
    """Bytes of weights and optimizer state at the end of training."""
    parameters = list(training.model.parameters())
    return StateFigures(
        trainable_weight_bytes=storage_bytes(p for p in parameters if p.requires_grad),
        # A 4-bit weight's quantization constants count with it (parameter_tensors).
        frozen_weight_bytes=storage_bytes(
            tensor for p in parameters if not p.requires_grad for tensor in parameter_tensors(p)),
        optimizer_state_bytes=optimizer_state_bytes(training.optimizer),
    )
