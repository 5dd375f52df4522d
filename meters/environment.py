"""The environment record: versions, device, code state and the host's load a run depends on."""

import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path

import torch

from meters import nvml
from results.schema import Environment

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_PACKAGES = ("torch", "transformers", "nvidia-ml-py")
"""What every run imports, whatever its method, workload and launcher: the rest declare theirs
(Method.packages, Workload.packages, Launcher.packages; launchers.recorded_packages gathers them)."""


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def load_average_1m() -> float | None:
    """The host's 1-minute load average now, or None where the platform has none (Windows) or refuses it."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def environment(device: torch.device, packages: tuple[str, ...]) -> Environment:
    """Where a run on `device` happens, naming the installed version of each of `packages`."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return Environment(
        python=platform.python_version(),
        packages={name: _version(name) for name in packages},
        cuda=torch.version.cuda,
        driver=nvml.driver_version(),
        device_type=device.type,
        device_name=device_name(device),
        host=socket.gethostname(),
        cpu_count=os.cpu_count(),
        load_average_1m=load_average_1m(),
        git_commit=_git("rev-parse", "HEAD"),
        git_dirty=None if status is None else bool(status),
    )
