"""NVML (nvidia-ml-py) figures, optional: no NVML library means no NVML figures, not a crash."""

import os

import pynvml


def _initialised() -> bool:
    try:
        pynvml.nvmlInit()
        return True
    except pynvml.NVMLError:
        return False


def driver_version() -> str | None:
    if not _initialised():
        return None
    return pynvml.nvmlSystemGetDriverVersion()


def process_memory_bytes(device_index: int) -> int | None:
    """GPU memory NVML attributes to this process (the CUDA context included), or None."""
    if not _initialised():
        return None
    handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
    for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
        if process.pid == os.getpid():
            return process.usedGpuMemory
    return None
