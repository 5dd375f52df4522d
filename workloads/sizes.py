"""Model configs by workload and size, declared in workloads/sizes.toml."""

import tomllib
from functools import cache
from pathlib import Path

SIZES_FILE = Path(__file__).with_name("sizes.toml")
METHOD_DEFAULT_KEYS = ("galore_rank",)
"""Keys of a size that are a method's per-size defaults, not part of the model config."""


@cache
def _all_configs() -> dict:
    with open(SIZES_FILE, "rb") as f:
        return tomllib.load(f)


def model_sizes(workload: str) -> list[str]:
    return list(_all_configs().get(workload, {}))


def _size_entry(workload: str, size: str) -> dict:
    sizes = _all_configs().get(workload, {})
    if size not in sizes:
        raise ValueError(
            f"{SIZES_FILE}: no size {size!r} for workload {workload!r}; accepted: {', '.join(sizes) or 'none'}"
        )
    return sizes[size]


def model_config(workload: str, size: str) -> dict:
    """The config dict for one workload size, or a ValueError naming the accepted sizes."""
    return {k: v for k, v in _size_entry(workload, size).items() if k not in METHOD_DEFAULT_KEYS}


def size_default(workload: str, size: str, key: str):
    """A method's per-size default (one of METHOD_DEFAULT_KEYS), or a ValueError naming the file and key."""
    entry = _size_entry(workload, size)
    if key not in entry:
        raise ValueError(f"{SIZES_FILE}: [{workload}.{size}] has no {key}; add one or pass the option explicitly")
    return entry[key]
