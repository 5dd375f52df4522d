"""Looks up model configs declared in suites/models.toml."""

import tomllib
from functools import cache
from pathlib import Path

MODELS_FILE = Path(__file__).with_name("models.toml")


@cache
def _all_configs() -> dict:
    with open(MODELS_FILE, "rb") as f:
        return tomllib.load(f)


def model_sizes(workload: str) -> list[str]:
    return list(_all_configs().get(workload, {}))


def model_config(workload: str, size: str) -> dict:
    """The config dict for one workload size, or a ValueError naming the accepted sizes."""
    sizes = _all_configs().get(workload, {})
    if size not in sizes:
        raise ValueError(
            f"{MODELS_FILE}: no size {size!r} for workload {workload!r}; accepted: {', '.join(sizes) or 'none'}"
        )
    return dict(sizes[size])
