"""Peak memory figures of a run, from the counters each device has."""

import resource

import torch

from meters import nvml
from meters.tracker import tensors_within


def reset_peaks(device: torch.device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict:
    """Device counters in bytes; absent counters are None rather than guessed."""
    figures = {
        # The worker process's peak resident set: on CPU it includes the Python and torch
        # libraries (a few hundred MB), so compare methods by difference, not by value.
        "process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "cuda_max_allocated_bytes": None,
        "cuda_max_reserved_bytes": None,
        "nvml_process_bytes": None,
    }
    if device.type == "cuda":
        figures["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        figures["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
        figures["nvml_process_bytes"] = nvml.process_memory_bytes(device.index or 0)
    return figures


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def state_bytes(training) -> dict:
    """Bytes of weights and optimizer state at the end of training, counted tensor by tensor."""
    parameters = list(training.model.parameters())
    optimizer_tensors = tensors_within(training.optimizer.state)
    return {
        "trainable_weight_bytes": tensor_bytes(p for p in parameters if p.requires_grad),
        "frozen_weight_bytes": tensor_bytes(p for p in parameters if not p.requires_grad),
        "optimizer_state_bytes": tensor_bytes(optimizer_tensors),
    }
