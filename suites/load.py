"""Reads a suite file (TOML) and expands its grid into run specs, refusing bad input early.

Every problem is reported as one line naming the file, the key and the accepted values,
before any run starts. Spec fields merge from the least to the most specific table:
[defaults], then the workload entry, then the method entry, then --set; `data` tables merge
key by key the same way, and are checked against the workload's data options. Each field's
value is checked by the run spec's own rules (core/spec.py), with the table that set it named.
A [launcher.<name>] table holds a launcher's options, checked by the launcher's own dataclass.
"""

import tomllib
from dataclasses import dataclass, fields
from itertools import product
from pathlib import Path

from core.options import OptionError, check_values, parse_options
from core.plan import PlannedRun, Suite
from core.spec import RunSpec, SpecError, check_field
from launchers import LAUNCHERS
from methods import METHODS
from workloads import WORKLOADS
from workloads.sizes import is_model_size, model_sizes

GRID_FIELDS = ("workload", "size", "method", "method_options", "seed")
SPEC_FIELDS = tuple(f.name for f in fields(RunSpec) if f.name not in GRID_FIELDS)
TOP_LEVEL_KEYS = ("name", "description", "seeds", "defaults", "workloads", "methods", "launcher", "slurm")
WORKLOAD_KEYS = ("name", "size")
METHOD_KEYS = ("name", "label", "options", "size_options", "sizes")
LEGACY_LAUNCHER_TABLES = {"slurm": "slurm"}
"""Top-level tables of suites written before launchers were an axis -> the launcher they configure."""


class SuiteError(ValueError):
    """A suite file that cannot be run; the message is one line naming file and key."""


@dataclass(frozen=True)
class _MethodEntry:
    where: str
    """e.g. "methods[2]." for error lines."""
    label: str
    fields: dict
    """RunSpec fields the entry sets, "method" and "method_options" included."""
    size_options: dict
    """size -> options merged over `options` for that size."""
    sizes: list[str] | None
    """The model sizes it pairs with; None for all."""


def _spec_fields(table: dict, where: str, source: str, allowed_extra: tuple[str, ...]) -> dict:
    """The RunSpec fields a table sets, after checking every key and value."""
    values = {}
    for key, value in table.items():
        if key in allowed_extra:
            continue
        if key not in SPEC_FIELDS:
            accepted = ", ".join([*allowed_extra, *SPEC_FIELDS])
            raise SuiteError(f"{source}: {where}{key} is not a known key; accepted: {accepted}")
        try:
            check_field(key, value)
        except SpecError as error:
            raise SuiteError(f"{source}: {where}{error}") from None
        values[key] = value
    return values


def _require(table: dict, key: str, where: str, source: str, accepted) -> str:
    if key not in table:
        raise SuiteError(f"{source}: {where}{key} is missing; accepted: {', '.join(accepted)}")
    if table[key] not in accepted:
        raise SuiteError(f"{source}: {where}{key} = {table[key]!r} is not known; accepted: {', '.join(accepted)}")
    return table[key]


def _table(entry: dict, key: str, where: str, source: str) -> dict:
    value = entry.get(key, {})
    if not isinstance(value, dict):
        raise SuiteError(f"{source}: {where}{key} = {value!r} must be a table")
    return value


def _entries(document: dict, key: str, source: str) -> list[dict]:
    entries = document.get(key)
    if not entries or not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SuiteError(f"{source}: [[{key}]] is missing or empty; it must list one table per {key[:-1]}")
    return entries


def _workload_entry(index: int, entry: dict, source: str) -> tuple[str, dict]:
    where = f"workloads[{index}]."
    name = _require(entry, "name", where, source, list(WORKLOADS))
    if isinstance(entry.get("size"), str) and is_model_size(name, entry["size"]):
        size = entry["size"]  # a listed size, or the path of a config.json
    else:
        size = _require(entry, "size", where, source, model_sizes(name))
    return where, {"workload": name, "size": size, **_spec_fields(entry, where, source, WORKLOAD_KEYS)}


def _method_entry(index: int, entry: dict, source: str, suite_sizes: list[str]) -> _MethodEntry:
    where = f"methods[{index}]."
    name = _require(entry, "name", where, source, list(METHODS))
    options = _table(entry, "options", where, source)
    size_options = _table(entry, "size_options", where, source)
    for size, table in size_options.items():
        if size not in suite_sizes:
            raise SuiteError(f"{source}: {where}size_options.{size} is no workload size here; "
                             f"accepted: {', '.join(suite_sizes)}")
        if not isinstance(table, dict):
            raise SuiteError(f"{source}: {where}size_options.{size} = {table!r} must be a table of options")
    sizes = entry.get("sizes")
    if sizes is not None and not (isinstance(sizes, list) and sizes and all(isinstance(s, str) for s in sizes)):
        raise SuiteError(f"{source}: {where}sizes = {sizes!r} must be a non-empty list of model sizes")
    for size in sizes or ():
        if size not in suite_sizes:
            raise SuiteError(f"{source}: {where}sizes: {size!r} is no workload size here; "
                             f"accepted: {', '.join(suite_sizes)}")
    label = entry.get("label", name)
    fields_set = _spec_fields(entry, where, source, METHOD_KEYS)
    return _MethodEntry(where, label, {"method": name, "method_options": options, **fields_set}, size_options, sizes)


def _merged_data(workload_where: str, workload_name: str, layers: list[tuple[str, dict]], source: str) -> dict:
    """The data tables of every layer, (where, table), merged: each layer's keys checked
    against the workload's data options, then the whole (required keys, allowed values)."""
    options_class = WORKLOADS[workload_name].data_options
    merged = {}
    for where, data in layers:
        try:
            check_values(options_class, data)
        except OptionError as error:
            raise SuiteError(f"{source}: {where}{error} (workload {workload_name})") from None
        merged.update(data)
    try:
        parse_options(options_class, merged, "data.")
    except OptionError as error:
        raise SuiteError(f"{source}: {workload_where}{error}") from None
    return merged


def _refuse_shared_labels(methods: list[_MethodEntry], suite_sizes: list[str], source: str):
    """Reports average a label's runs as seeds of one setting: two entries may share a label
    only where they pair with different model sizes."""
    owner: dict[tuple[str, str], str] = {}
    for method in methods:
        for size in method.sizes or suite_sizes:
            first = owner.setdefault((method.label, size), method.where)
            if first != method.where:
                raise SuiteError(
                    f"{source}: {method.where}label {method.label!r} is also {first.rstrip('.')}'s at size {size}; "
                    "give each method entry its own label"
                )


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
    """--set `key=value` strings; data.x sets data's x (checked against each workload when
    the suite is loaded)."""
    overrides: dict = {}
    for assignment in assignments:
        key, value = parse_assignment(assignment, "--set")
        if key.startswith("data."):
            overrides.setdefault("data", {})[key.removeprefix("data.")] = value
        elif key == "data":
            if not isinstance(value, dict):
                raise SuiteError(f"command line: --set data = {value!r} must be a table, e.g. data={{corpus=\"c4\"}}, "
                                 "or set one key: --set data.corpus=c4")
            overrides.setdefault("data", {}).update(value)
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
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise SuiteError(f"{source}: seeds = {seeds!r} repeats {repeated[0]}; each seed runs once")
    defaults = _spec_fields(_table(document, "defaults", "", source), "defaults.", source, ())
    workloads = [_workload_entry(i, e, source) for i, e in enumerate(_entries(document, "workloads", source))]
    suite_sizes = [workload["size"] for _, workload in workloads]
    methods = [_method_entry(i, e, source, suite_sizes) for i, e in enumerate(_entries(document, "methods", source))]
    _refuse_shared_labels(methods, suite_sizes, source)
    overrides = overrides or {}

    runs = []
    for (workload_where, workload), method, seed in product(workloads, methods, seeds):
        # A method entry with `sizes` (e.g. a rank that grows with the model) pairs only with those.
        if method.sizes is not None and workload["size"] not in method.sizes:
            continue
        options = {**method.fields["method_options"], **method.size_options.get(workload["size"], {})}
        try:
            parse_options(METHODS[method.fields["method"]].options, options, "options.")
        except OptionError as error:
            raise SuiteError(f"{source}: {method.where}{error}") from None
        data_layers = [
            ("defaults.data.", defaults.get("data", {})),
            (f"{workload_where}data.", workload.get("data", {})),
            (f"{method.where}data.", method.fields.get("data", {})),
            ("--set data.", overrides.get("data", {})),
        ]
        data = _merged_data(workload_where, workload["workload"], data_layers, source)
        values = {**defaults, **workload, **method.fields, **overrides, "method_options": options,
                  "data": data, "seed": seed}
        try:
            spec = RunSpec(**values)
        except SpecError as error:  # fields that must agree, set in different tables
            raise SuiteError(f"{source}: {method.label} on {workload['workload']}-{workload['size']}: {error}") from None
        runs.append(PlannedRun(label=method.label, spec=spec))
    return Suite(name=name, description=document.get("description", ""), runs=runs,
                 launcher_options=_launcher_options(document, source))


def _launcher_options(document: dict, source: str) -> dict:
    """Launcher name -> its options, from [launcher.<name>] tables (and the legacy [slurm])."""
    tables = {name: (f"launcher.{name}.", table) for name, table in _table(document, "launcher", "", source).items()}
    for key, name in LEGACY_LAUNCHER_TABLES.items():
        if key in document:
            if name in tables:
                raise SuiteError(f"{source}: [{key}] and [launcher.{name}] both set {name}'s options; keep one")
            tables[name] = (f"{key}.", document[key])
    options = {}
    for name, (prefix, table) in tables.items():
        if name not in LAUNCHERS:
            raise SuiteError(f"{source}: launcher.{name} is not a registered launcher; accepted: {', '.join(LAUNCHERS)}")
        if not isinstance(table, dict):
            raise SuiteError(f"{source}: {prefix.rstrip('.')} = {table!r} must be a table")
        try:
            options[name] = LAUNCHERS[name].parse_table(table, prefix)
        except OptionError as error:
            raise SuiteError(f"{source}: {error}") from None
    return options
