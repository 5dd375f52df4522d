"""Stacked bars of each run's tracked memory at its peak, by category (weights, gradients,
optimizer state, activations, other), one panel per workload."""

from pathlib import Path

from reports.columns import MIB
from reports.plots import ok_runs_by_workload, panels, save
from results.schema import MEMORY_CATEGORIES, Record


def memory_breakdown(records: list[Record], path: Path):
    """One bar per method label (its first successful seed), stacked by category, in MiB."""
    by_workload: dict[str, dict[str, dict]] = {}
    for workload, runs in ok_runs_by_workload(records).items():
        for record in runs:
            breakdown = record.memory.tracker_at_peak_bytes
            if breakdown:
                by_workload.setdefault(workload, {}).setdefault(record.label, breakdown)
    if not by_workload:
        return None
    figure, axes = panels(len(by_workload), 4.5)
    for axis, (workload, breakdowns) in zip(axes, by_workload.items()):
        labels = list(breakdowns)
        bottoms = [0.0] * len(labels)
        for category in MEMORY_CATEGORIES:
            heights = [breakdowns[label][category] / MIB for label in labels]
            axis.bar(labels, heights, bottom=bottoms, label=category.replace("_", " "))
            bottoms = [b + h for b, h in zip(bottoms, heights)]
        axis.set(title=f"{workload}: tracked memory at the peak", ylabel="MiB (2^20 bytes)")
        axis.tick_params(axis="x", labelrotation=30)
        axis.legend(fontsize="small")
    return save(figure, path)
