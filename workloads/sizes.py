"""Model configs by workload and size: the sizes declared in workloads/sizes.toml, and for the
causal-LM workload also Hugging Face config.json files, shipped (workloads/configs/NAME.json) or
given by path (a config.json, or a checkpoint directory holding one)."""

import json
import tomllib
from functools import cache
from pathlib import Path

SIZES_FILE = Path(__file__).with_name("sizes.toml")
CONFIGS_DIR = Path(__file__).with_name("configs")
METHOD_DEFAULT_KEYS = ("galore_rank",)
"""Keys of a size that are a method's per-size defaults, not part of the model config."""
HF_CONFIG_WORKLOADS = ("llama",)
"""Workloads whose size may also be a Hugging Face causal-LM config.json (a shipped name or a path)."""
GALORE_RANK_PER_HIDDEN = 4
"""A config.json size's default GaLore rank is hidden_size / this (the GaLore paper's rule at 60M,
350M, 1B and 7B: 512 / 4, 1024 / 4, 2048 / 4, 4096 / 4), capped at the width of its key and value
projections (num_key_value_heads x head_dim), the smallest side GaLore projects under grouped-query
attention: Qwen2.5-0.5B's 128, Qwen2.5-7B's 512."""
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
"""Files whose presence makes a directory with a config.json a checkpoint to load, not a config
to initialise randomly."""


@cache
def _all_configs() -> dict:
    with open(SIZES_FILE, "rb") as f:
        return tomllib.load(f)


def shipped_configs() -> list[str]:
    """The names of the config.json files under workloads/configs."""
    return sorted(path.stem for path in CONFIGS_DIR.glob("*.json"))


def looks_like_path(size: str) -> bool:
    return "/" in size or size.endswith(".json") or size.startswith(("~", "."))


def config_file(workload: str, size: str) -> Path | None:
    """The config.json a size names (a shipped name, a file, a directory holding one), None for a
    sizes.toml size; a ValueError, in one line, for a path that holds no config.json."""
    if workload not in HF_CONFIG_WORKLOADS or size in _all_configs().get(workload, {}):
        return None
    if size in shipped_configs():
        return CONFIGS_DIR / f"{size}.json"
    if not looks_like_path(size):
        return None
    path = Path(size).expanduser()
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"size {size!r}: no config.json there; accepted: a size of workloads/sizes.toml, a shipped "
                         f"config ({', '.join(shipped_configs())}), the path of a config.json or of a checkpoint "
                         "directory holding one")
    return file


def model_sizes(workload: str) -> list[str]:
    """The sizes a workload names: those of sizes.toml, then the shipped configs where it takes them."""
    shipped = shipped_configs() if workload in HF_CONFIG_WORKLOADS else []
    return list(_all_configs().get(workload, {})) + shipped


def is_model_size(workload: str, size: str) -> bool:
    """Whether `size` names a model of the workload (a listed size, or a config.json path that exists)."""
    if size in model_sizes(workload):
        return True
    try:
        return config_file(workload, size) is not None
    except ValueError:
        return False


@cache
def _hf_config(file: Path) -> dict:
    with open(file) as f:
        values = json.load(f)
    if not isinstance(values, dict) or "model_type" not in values:
        raise ValueError(f"{file}: not a Hugging Face config.json (it names no model_type)")
    if any((file.parent / name).exists() for name in WEIGHT_FILES) and file.parent != CONFIGS_DIR:
        values["pretrained"] = str(file.parent)
    return values


def _size_entry(workload: str, size: str) -> dict:
    file = config_file(workload, size)
    if file is not None:
        return _hf_config(file)
    sizes = _all_configs().get(workload, {})
    if size not in sizes:
        accepted = ", ".join(model_sizes(workload)) or "none"
        if workload in HF_CONFIG_WORKLOADS:
            accepted += ", or the path of a config.json or checkpoint directory"
        raise ValueError(f"{SIZES_FILE}: no size {size!r} for workload {workload!r}; accepted: {accepted}")
    return sizes[size]


def model_config(workload: str, size: str) -> dict:
    """The config dict for one workload size, or a ValueError naming the accepted sizes. A
    config.json size gives its values as published, with "model_type"; "pretrained" names the
    checkpoint directory to load where the size is one."""
    return {k: v for k, v in _size_entry(workload, size).items() if k not in METHOD_DEFAULT_KEYS}


def _key_value_width(config: dict) -> int:
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return config.get("num_key_value_heads", heads) * head_dim


def size_default(workload: str, size: str, key: str):
    """A method's per-size default (one of METHOD_DEFAULT_KEYS), or a ValueError naming the file and key."""
    entry = _size_entry(workload, size)
    if key == "galore_rank" and "model_type" in entry:
        return min(entry["hidden_size"] // GALORE_RANK_PER_HIDDEN, _key_value_width(entry))
    if key not in entry:
        raise ValueError(f"{SIZES_FILE}: [{workload}.{size}] has no {key}; add one or pass the option explicitly")
    return entry[key]
