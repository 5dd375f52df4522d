"""Stacked bars of each method row's tracked memory at its peak, by category (weights,
gradients, optimizer state, activations, other), one panel per workload."""

from pathlib import Path

from reports.columns import MIB
from reports.labels import row_key
from reports.plots import legend_below, ok_runs_by_workload, panels, save
from results.schema import MEMORY_CATEGORIES, Record


def memory_breakdown(records: list[Record], labels: dict[str, str], path: Path):
    """One bar per method row (its first successful seed: the tracker's bytes do not vary by seed),
    stacked by category, in MiB."""
    by_workload: dict[str, dict[str, dict]] = {}
    for workload, runs in ok_runs_by_workload(records).items():
        for record in runs:
            breakdown = record.memory.tracker_at_peak_bytes
            if breakdown:
                by_workload.setdefault(workload, {}).setdefault(labels[row_key(record)], breakdown)
    if not by_workload:
        return None
    figure, axes = panels(len(by_workload), 4.2)
    for axis, (workload, breakdowns) in zip(axes, by_workload.items()):
        rows = list(breakdowns)
        lefts = [0.0] * len(rows)
        for category in MEMORY_CATEGORIES:
            widths = [breakdowns[row].get(category, 0) / MIB for row in rows]
            axis.barh(rows, widths, left=lefts, label=category.replace("_", " "))
            lefts = [left + width for left, width in zip(lefts, widths)]
        axis.invert_yaxis()  # the table's order, top to bottom
        axis.set(title=f"{workload}: tracked memory at the peak", xlabel="MiB (2^20 bytes)")
        axis.grid(axis="x", alpha=0.3)
    legend_below(figure, axes)
    return save(figure, path)
