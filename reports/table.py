"""The comparison table: one row per workload, size and method label, averaged over seeds."""

import pandas as pd

from reports.columns import COLUMNS
from results.schema import Record


def runs_frame(records: list[Record]) -> pd.DataFrame:
    """One row per record: its grouping keys and every column's figure in the record's unit."""
    rows = []
    for record in records:
        row = {
            "workload": record.workload_name,
            "method": record.label,
            "seed": record.spec.seed,
            "status": record.status,
            "error": record.error,
        }
        rows.append({**row, **{column.key: column.value(record) for column in COLUMNS}})
    return pd.DataFrame(rows)


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean over the successful seeds of each (workload, method), every column in its unit;
    "runs ok" says how many ran ok. Columns no run has are left out."""
    keys = ["workload", "method"]
    ok = runs[runs.status == "ok"]
    grouped = ok.groupby(keys, sort=False)
    ok_of_all = runs.groupby(keys, sort=False).status.apply(lambda status: f"{(status == 'ok').sum()}/{len(status)}")
    table = pd.DataFrame({"runs ok": ok_of_all})
    for column in COLUMNS:
        table[column.title] = pd.to_numeric(grouped[column.key].mean(), errors="coerce") / column.scale
    return table.dropna(axis=1, how="all").reset_index()
