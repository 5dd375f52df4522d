"""The report's first lines: per workload, which method row uses least memory, learns best and
runs fastest, with its change against the baseline, so a reader gets the answer before the tables;
a speed figure that is noise (reports/speed_noise.py) says so there too."""

import pandas as pd

from reports.columns import MIB
from reports.summary import DELTA_UNRELIABLE

PEAK, LOSS, SCORE, SPEED = ("memory.tracker_peak_bytes", "metrics.final_loss", "metrics.task_score",
                            "metrics.tokens_per_s")


def _best(rows: pd.DataFrame, key: str, lowest: bool) -> pd.Series | None:
    """The best row, its method naming every row tied with it (two methods both at score 1)."""
    values = rows[f"{key}_mean"].dropna()
    if values.empty:
        return None
    best = rows.loc[values.idxmin() if lowest else values.idxmax()].copy()
    best["method"] = ", ".join(rows.method[rows[f"{key}_mean"] == best[f"{key}_mean"]])
    return best


def _versus(row: pd.Series, key: str, baseline: str) -> str:
    delta = row.get(f"{key}_delta_pct")
    return "" if row.label == baseline or delta is None or pd.isna(delta) else f", {delta:+.1f}% vs {baseline}"


def glance_lines(summary: pd.DataFrame, baseline: str) -> list[str]:
    """One line per workload, e.g. "llama-tiny: least memory adam8bit (19.96 MiB tracked peak, -9.3% vs full); ..."."""
    lines = []
    for workload, rows in summary.groupby("workload", sort=False):
        parts = []
        if (row := _best(rows, PEAK, lowest=True)) is not None:
            parts.append(f"least memory **{row['method']}** ({row[f'{PEAK}_mean'] / MIB:.4g} MiB tracked peak"
                         f"{_versus(row, PEAK, baseline)})")
        if (row := _best(rows, SCORE, lowest=False)) is not None:
            parts.append(f"best task score **{row['method']}** ({row[f'{SCORE}_mean']:.4g})")
        elif (row := _best(rows, LOSS, lowest=True)) is not None:
            parts.append(f"lowest final loss **{row['method']}** ({row[f'{LOSS}_mean']:.4g}{_versus(row, LOSS, baseline)})")
        if (row := _best(rows, SPEED, lowest=False)) is not None:
            noisy = "; not to be trusted: step times spread, see Speed" if row[DELTA_UNRELIABLE] else ""
            parts.append(f"fastest **{row['method']}** ({row[f'{SPEED}_mean']:.0f} tokens/s"
                         f"{_versus(row, SPEED, baseline)}{noisy})")
        if parts:
            lines.append(f"`{workload}`: " + "; ".join(parts) + ".")
    return lines
