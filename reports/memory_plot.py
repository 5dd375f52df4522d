"""Stacked bars of each run's tracked memory at its peak, by category (weights, gradients,
optimizer state, activations, other), one panel per workload."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen before pyplot loads

from meters.tracker import CATEGORIES  # noqa: E402

MIB = 2**20


def memory_breakdown(records: list[dict], path: Path):
    """One bar per method label (its first successful seed), stacked by category, in MiB."""
    by_workload: dict[str, dict[str, dict]] = {}
    for record in records:
        breakdown = record.get("memory", {}).get("tracker_at_peak_bytes")
        if record["status"] == "ok" and breakdown:
            spec = record["spec"]
            by_workload.setdefault(f"{spec['workload']}-{spec['size']}", {}).setdefault(record["label"], breakdown)
    if not by_workload:
        return None
    figure, axes = plt.subplots(1, len(by_workload), figsize=(6 * len(by_workload), 4.5), squeeze=False)
    for axis, (workload, breakdowns) in zip(axes[0], by_workload.items()):
        labels = list(breakdowns)
        bottoms = [0.0] * len(labels)
        for category in CATEGORIES:
            heights = [breakdowns[label][category] / MIB for label in labels]
            axis.bar(labels, heights, bottom=bottoms, label=category.replace("_", " "))
            bottoms = [b + h for b, h in zip(bottoms, heights)]
        axis.set(title=f"{workload}: tracked memory at the peak", ylabel="MiB (2^20 bytes)")
        axis.tick_params(axis="x", labelrotation=30)
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
