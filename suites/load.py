"""Reads a suite file (TOML) and expands its grid into run specs, refusing bad input early.

Every problem is reported as one line naming the file, the key and the accepted values,
before any run starts.
"""

import tomllib
from dataclasses import dataclass, fields
from itertools import product
from pathlib import Path

from methods import METHODS
from suites.models import model_sizes
from suites.spec import RunSpec
from workloads import WORKLOADS

GRID_FIELDS = ("workload", "size", "method", "method_options", "seed")
SPEC_TYPES = {f.name: f.type for f in fields(RunSpec) if f.name not in GRID_FIELDS}
CHOICES = {"dtype": ("float32", "bfloat16"), "device": ("auto", "cpu", "cuda")}
POSITIVE = ("steps", "batch_size", "grad_accum", "seq_len", "lr")
TOP_LEVEL_KEYS = ("name", "description", "seeds", "defaults", "workloads", "methods")


class SuiteError(ValueError):
    """A suite file that cannot be run; the message is one line naming file and key."""


@dataclass(frozen=True)
class PlannedRun:
    label: str
    """How reports name the method row (the method name unless the suite gives a label)."""
    spec: RunSpec


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    runs: list[PlannedRun]


def _type_name(expected: type) -> str:
    return {dict: "a table", str: "a string", int: "an integer", float: "a number", bool: "a boolean"}[expected]


def _check_value(where: str, key: str, value, source: str):
    expected = SPEC_TYPES[key]
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    type_ok = (expected is float and is_number) or (
        isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    )
    if not type_ok:
        raise SuiteError(f"{source}: {where}{key} = {value!r} must be {_type_name(expected)}")
    if key in CHOICES and value.split(":")[0] not in CHOICES[key]:
        raise SuiteError(f"{source}: {where}{key} = {value!r}; accepted: {', '.join(CHOICES[key])}")
    if key in POSITIVE and value <= 0:
        raise SuiteError(f"{source}: {where}{key} = {value!r} must be positive")


def _spec_fields(table: dict, where: str, source: str, allowed_extra: tuple[str, ...]) -> dict:
    """The RunSpec fields a table sets, after checking every key and value."""
    values = {}
    for key, value in table.items():
        if key in allowed_extra:
            continue
        if key not in SPEC_TYPES:
            accepted = ", ".join([*allowed_extra, *SPEC_TYPES])
            raise SuiteError(f"{source}: {where}{key} is not a known key; accepted: {accepted}")
        _check_value(where, key, value, source)
        values[key] = value
    return values


def _require(table: dict, key: str, where: str, source: str, accepted) -> str:
    if key not in table:
        raise SuiteError(f"{source}: {where}{key} is missing; accepted: {', '.join(accepted)}")
    if table[key] not in accepted:
        raise SuiteError(f"{source}: {where}{key} = {table[key]!r} is not known; accepted: {', '.join(accepted)}")
    return table[key]


def _entries(document: dict, key: str, source: str) -> list[dict]:
    entries = document.get(key)
    if not entries or not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SuiteError(f"{source}: [[{key}]] is missing or empty; it must list one table per {key[:-1]}")
    return entries


def _workload_entry(index: int, entry: dict, source: str) -> dict:
    where = f"workloads[{index}]."
    name = _require(entry, "name", where, source, list(WORKLOADS))
    size = _require(entry, "size", where, source, model_sizes(name))
    return {"workload": name, "size": size, **_spec_fields(entry, where, source, ("name", "size"))}


def _method_entry(index: int, entry: dict, source: str) -> tuple[str, dict, list[str] | None]:
    """(label, spec fields, the model sizes it pairs with: None for all)."""
    where = f"methods[{index}]."
    name = _require(entry, "name", where, source, list(METHODS))
    options = entry.get("options", {})
    if not isinstance(options, dict):
        raise SuiteError(f"{source}: {where}options must be a table")
    try:
        METHODS[name].parse_options(options)
    except (TypeError, ValueError) as error:
        raise SuiteError(f"{source}: {where}options: {error}") from None
    sizes = entry.get("sizes")
    if sizes is not None and not (isinstance(sizes, list) and sizes and all(isinstance(s, str) for s in sizes)):
        raise SuiteError(f"{source}: {where}sizes = {sizes!r} must be a non-empty list of model sizes")
    label = entry.get("label", name)
    fields_set = _spec_fields(entry, where, source, ("name", "label", "options", "sizes"))
    return label, {"method": name, "method_options": options, **fields_set}, sizes


def parse_assignment(assignment: str, flag: str) -> tuple[str, object]:
    """A command-line `key=value` (the value in TOML syntax; a bare word is a string)."""
    key, separator, text = assignment.partition("=")
    if not separator:
        raise SuiteError(f"{flag} {assignment!r}: expected key=value")
    try:
        return key, tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return key, text


def parse_overrides(assignments: list[str]) -> dict:
    """--set `key=value` strings; data.x sets data's x."""
    overrides: dict = {}
    for assignment in assignments:
        key, value = parse_assignment(assignment, "--set")
        if key.startswith("data."):
            overrides.setdefault("data", {})[key.removeprefix("data.")] = value
        else:
            overrides[key] = value
    _spec_fields({k: v for k, v in overrides.items() if k != "data"}, "--set ", "command line", ())
    return overrides


def load_suite(path: str | Path, overrides: dict | None = None) -> Suite:
    """Parse and validate a suite file; `overrides` (from --set) win over everything in it."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise SuiteError(f"{source}: no such suite file") from None
    except tomllib.TOMLDecodeError as error:
        raise SuiteError(f"{source}: not valid TOML: {error}") from None

    unknown = sorted(set(document) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise SuiteError(f"{source}: {unknown[0]} is not a known key; accepted: {', '.join(TOP_LEVEL_KEYS)}")
    name = document.get("name", Path(path).stem)
    seeds = document.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise SuiteError(f"{source}: seeds = {seeds!r} must be a non-empty list of integers")
    defaults = _spec_fields(document.get("defaults", {}), "defaults.", source, ())
    workloads = [_workload_entry(i, e, source) for i, e in enumerate(_entries(document, "workloads", source))]
    methods = [_method_entry(i, e, source) for i, e in enumerate(_entries(document, "methods", source))]

    suite_sizes = [w["size"] for w in workloads]
    for index, (_, _, sizes) in enumerate(methods):
        for size in sizes or ():
            if size not in suite_sizes:
                raise SuiteError(
                    f"{source}: methods[{index}].sizes: {size!r} is no workload size here; "
                    f"accepted: {', '.join(suite_sizes)}"
                )

    runs = []
    for workload, (label, method, sizes), seed in product(workloads, methods, seeds):
        # A method entry with `sizes` (e.g. a rank that grows with the model) pairs only with those.
        if sizes is not None and workload["size"] not in sizes:
            continue
        values = {**defaults, **workload, **method, "seed": seed}
        for key, value in (overrides or {}).items():
            values[key] = {**values.get("data", {}), **value} if key == "data" else value
        runs.append(PlannedRun(label=label, spec=RunSpec(**values)))
    return Suite(name=name, description=document.get("description", ""), runs=runs)
