"""The summary: one row per workload (size, task) and method row label, over its seeds.

`summary_frame` holds the figures in the records' base units (bytes, seconds, per second) as
mean and standard deviation over the seeds that finished ok, plus percent deltas against the
baseline method, and whether its speed figures are noise (reports/speed_noise.py); it is what
summary.csv holds. `display_tables` formats it into the report's tables, each in its column's
display unit."""

import pandas as pd

from core.statuses import Status
from reports.columns import COLUMNS, TABLES, Column
from reports.gpus import mfu, parameter_count
from reports.labels import row_key, row_labels
from reports.speed_noise import marked, noisy_step_times
from results.schema import Record

KEYS = ["workload", "method"]
MFU_KEY = "mfu_fraction"
"""Model FLOPs utilization (0..1) of a CUDA run: 6 x parameters x tokens/s over the GPU's BF16 peak."""
MFU_TITLE = "MFU (%)"
TOKENS_PER_S = "metrics.tokens_per_s"
NOISY_KEY = "step_times_noisy"
"""A run's step times spread beyond reports/speed_noise.py's threshold."""
UNRELIABLE = "tokens_per_s_unreliable"
"""Some ok run of the row has noisy step times: its tokens/s and MFU are not to be trusted."""
DELTA_UNRELIABLE = "tokens_per_s_delta_unreliable"
"""The row's or its baseline row's tokens/s is unreliable, and so the change between them."""


def _options_text(record: Record) -> str:
    options = ", ".join(f"{key}={value}" for key, value in sorted(record.spec.method_options.items()))
    return f"{record.spec.method}" + (f" ({options})" if options else "")


def runs_frame(records: list[Record]) -> pd.DataFrame:
    """One row per run record: its row keys, settings, outcome and every column's figure in base units."""
    labels = row_labels(records)
    rows = []
    for record in records:
        weight_bytes = (record.memory.trainable_weight_bytes or 0) + (record.memory.frozen_weight_bytes or 0)
        cuda = record.environment.device_type == "cuda"
        row = {
            "workload": record.workload_name,
            "method": labels[row_key(record)],
            "label": record.label,
            "options": _options_text(record),
            "lr": record.spec.lr,
            "seed": record.spec.seed,
            "status": record.status,
            "error": record.error,
            NOISY_KEY: noisy_step_times(record.metrics.step_time_p50_s, record.metrics.step_time_p90_s),
            MFU_KEY: mfu(record.metrics.tokens_per_s, parameter_count(weight_bytes, record.spec.dtype),
                         record.environment.device_name) if cuda else None,
        }
        rows.append({**row, **{column.key: column.value(record) for column in COLUMNS}})
    return pd.DataFrame(rows)


def _status_text(statuses: pd.Series) -> str:
    counts = statuses.value_counts()
    ok = int(counts.get(Status.OK, 0))
    failed = ", ".join(f"{count} {status}" for status, count in counts.items() if status != Status.OK)
    return f"{ok}/{len(statuses)} ok" + (f"; {failed}" if failed else "")


def summary_frame(runs: pd.DataFrame, baseline: str = "full") -> pd.DataFrame:
    """Mean and std (`<key>_mean`, `<key>_std`) of every figure over each row's ok seeds, in base
    units; `<key>_delta_pct` against the workload's `baseline` label for delta columns; UNRELIABLE
    and DELTA_UNRELIABLE. Failed runs keep their row, with their status and no figures."""
    grouped = runs.groupby(KEYS, sort=False)
    summary = grouped.agg(label=("label", "first"), options=("options", "first"), lr=("lr", "first"),
                          seeds=("seed", "nunique"))
    summary["runs ok"] = grouped.status.apply(_status_text)
    summary["errors"] = grouped.error.apply(lambda errors: "; ".join(sorted(set(errors.dropna()))))
    figure_keys = [column.key for column in COLUMNS] + [MFU_KEY]
    numbers = runs[runs.status == Status.OK][KEYS + figure_keys].copy()
    for key in figure_keys:
        numbers[key] = pd.to_numeric(numbers[key], errors="coerce")  # None -> NaN
    ok = numbers.groupby(KEYS, sort=False)
    for key in figure_keys:
        summary[f"{key}_mean"] = ok[key].mean()
        summary[f"{key}_std"] = ok[key].std()
    summary[UNRELIABLE] = runs[runs.status == Status.OK].groupby(KEYS, sort=False)[NOISY_KEY].any()
    summary[UNRELIABLE] = summary[UNRELIABLE].eq(True)  # a row without ok runs has no figure to doubt
    summary = summary.reset_index()
    for column in COLUMNS:
        if column.delta:
            base = _baseline_values(summary, f"{column.key}_mean", baseline)
            summary[f"{column.key}_delta_pct"] = 100 * (summary[f"{column.key}_mean"] - base) / base
    summary[DELTA_UNRELIABLE] = summary[UNRELIABLE] | _baseline_values(summary, UNRELIABLE, baseline).eq(True)
    return summary


def _baseline_values(summary: pd.DataFrame, key: str, baseline: str) -> pd.Series:
    """Each row's `key` of the baseline label's row of the same workload (NaN where it has none)."""
    base_rows = summary[summary.label == baseline].drop_duplicates("workload").set_index("workload")[key]
    return summary.workload.map(base_rows)


def _cell(mean: float, std: float, number_format: str) -> str | None:
    if pd.isna(mean):
        return None
    text = format(mean, number_format)
    return text if pd.isna(std) else f"{text} ± {std:.2g}"


def _delta_cell(row: pd.Series, key: str, baseline: str):
    if row.label == baseline:
        return "baseline"
    value = row.get(f"{key}_delta_pct")
    return None if value is None or pd.isna(value) else f"{value:+.1f}%"


def _delta_title(column: Column, baseline: str) -> str:
    return f"Δ {column.heading} vs {baseline}"


def _mark_unreliable(speed: pd.DataFrame, summary: pd.DataFrame, baseline: str):
    """Marks the tokens/s, MFU and Δ tokens/s cells that reports/speed_noise.py says are noise."""
    tokens = next(column for column in COLUMNS if column.key == TOKENS_PER_S)
    for title, flags in ((tokens.title, summary[UNRELIABLE]), (MFU_TITLE, summary[UNRELIABLE]),
                         (_delta_title(tokens, baseline), summary[DELTA_UNRELIABLE])):
        if title in speed:
            speed[title] = [cell if cell == "baseline" else marked(cell, flag)
                            for cell, flag in zip(speed[title], flags)]


def display_tables(summary: pd.DataFrame, baseline: str = "full") -> dict[str, pd.DataFrame]:
    """The report's tables by name ("settings" and TABLES), figures in display units as text
    ("mean ± std" over several seeds), a missing figure None; columns no row has are left out."""
    tables = {"settings": summary[KEYS + ["options", "lr", "seeds", "runs ok"]].copy()}
    for name in TABLES:
        table = summary[KEYS].copy()
        for column in (c for c in COLUMNS if c.table == name):
            mean, std = summary[f"{column.key}_mean"] / column.scale, summary[f"{column.key}_std"] / column.scale
            table[column.title] = [_cell(m, s, column.number_format) for m, s in zip(mean, std)]
            if column.delta:
                table[_delta_title(column, baseline)] = [_delta_cell(row, column.key, baseline)
                                                         for _, row in summary.iterrows()]
                if table[column.title].isna().all():
                    del table[_delta_title(column, baseline)]
        if name == "speed":
            table[MFU_TITLE] = [_cell(100 * m, 100 * s, ".1f") for m, s in
                                zip(summary[f"{MFU_KEY}_mean"], summary[f"{MFU_KEY}_std"])]
            _mark_unreliable(table, summary, baseline)
        tables[name] = table.dropna(axis=1, how="all")
    return tables
