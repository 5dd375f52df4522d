"""The traced estimates as a table: peak and breakdown per size and method, in GB (10^9 bytes),
apart from every measured figure."""

import pandas as pd

from core.statuses import RecordKind, Status
from core.units import GB
from reports.labels import row_key
from results.schema import MEMORY_CATEGORIES, Record


def estimate_setting(spec) -> str:
    """What sets a traced estimate apart besides its size and method: batch, sequence length,
    precision policy and, with several ranks, FSDP2's (figures per rank)."""
    ranks = f", FSDP2 x{spec.world_size} (per rank)" if spec.world_size > 1 else ""
    return f"batch {spec.batch_size}, seq {spec.seq_len}, {spec.policy.name}{ranks}"


def estimates_table(records: list[Record], labels: dict[str, str]) -> pd.DataFrame:
    """One row per traced estimate (failed ones with their status), by row label, figures as text."""
    rows = []
    for record in records:
        if record.kind != RecordKind.TRACED_ESTIMATE:
            continue
        spec = record.spec
        row = {"workload": record.workload_name, "method": labels[row_key(record)],
               "setting": estimate_setting(spec),
               "status": record.status if record.status == Status.OK else f"{record.status}: {record.error}"}
        peak, breakdown = record.memory.tracker_peak_bytes, record.memory.tracker_at_peak_bytes or {}
        row["estimated peak (GB)"] = f"{peak / GB:.2f}" if peak else None
        for category in MEMORY_CATEGORIES:
            row[f"{category.replace('_', ' ')} (GB)"] = (f"{breakdown[category] / GB:.2f}"
                                                         if category in breakdown else None)
        rows.append(row)
    table = pd.DataFrame(rows).dropna(axis=1, how="all")
    if len(table) and (table.status == Status.OK).all():
        table = table.drop(columns="status")  # a column of "ok" says nothing
    return table
