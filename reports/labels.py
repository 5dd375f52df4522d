"""Row labels: the suite's method label, made unique where one label covers different settings.

Two method entries may share a label (or a suite may reuse one by mistake) while their options
differ; their runs must never be averaged into one row. Such rows get the settings that differ
appended, e.g. "lora (rank=8)" and "lora (rank=16)"."""

import json

from results.schema import Record

NOT_SETTINGS = ("seed", "device", "method_options", "data")
"""Spec fields that do not make a different row: seeds are averaged, the device is the
environment's; options and data are compared key by key instead."""


def settings(record: Record, ignored: tuple[str, ...] = NOT_SETTINGS) -> dict:
    """What a run was asked to do, flat, seed aside: method, its options, data options, spec fields."""
    spec = record.spec.to_json()
    flat = {key: value for key, value in spec.items() if key not in ignored}
    flat.update(spec["method_options"])
    flat.update({f"data.{key}": value for key, value in spec["data"].items()})
    return flat


def row_key(record: Record) -> tuple[str, str]:
    """What row_labels keys a record by: its suite and run id (one spec may be in two suites)."""
    return record.suite, record.run_id


def row_labels(records: list[Record], across_sizes: bool = False) -> dict[tuple[str, str], str]:
    """Each record's row label, by row_key: its label, plus the differing settings where the same
    label on the same workload covers runs with different settings. `across_sizes`: one label per method line
    across model sizes (the estimates plot), the size not counted as a setting."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        workload = f"{record.spec.workload} {record.setting.task}" if across_sizes else record.workload_name
        groups.setdefault((workload, record.label), []).append(record)
    ignored = NOT_SETTINGS + ("size",) if across_sizes else NOT_SETTINGS
    labels = {}
    for (_, label), group in groups.items():
        flat = [settings(record, ignored) for record in group]
        keys = sorted({key for one in flat for key in one})
        differing = [key for key in keys if len({json.dumps(one.get(key), sort_keys=True) for one in flat}) > 1]
        for record, one in zip(group, flat):
            suffix = ", ".join(f"{key}={one.get(key, 'default')}" for key in differing)
            labels[row_key(record)] = f"{label} ({suffix})" if suffix else label
    return labels
