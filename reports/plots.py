"""Plots of run records (matplotlib, PNG, no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen before pyplot loads

from results.schema import Record  # noqa: E402


def ok_runs_by_workload(records: list[Record]) -> dict[str, list[Record]]:
    """Successful runs grouped by the table's workload name (a GLUE task gets its own panel)."""
    by_workload: dict[str, list[Record]] = {}
    for record in records:
        if record.status == "ok":
            by_workload.setdefault(record.workload_name, []).append(record)
    return by_workload


def panels(count: int, height: float):
    """A figure with `count` side-by-side panels, and the panels."""
    figure, axes = plt.subplots(1, count, figsize=(6 * count, height), squeeze=False)
    return figure, axes[0]


def save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def loss_curves(records: list[Record], path: Path):
    """Training loss against step, one line per successful run, one panel per workload."""
    by_workload = ok_runs_by_workload(records)
    if not by_workload:
        return None
    figure, axes = panels(len(by_workload), 4)
    for axis, (workload, runs) in zip(axes, by_workload.items()):
        for record in runs:
            label = f"{record.label} (seed {record.spec.seed})"
            axis.plot(record.metrics.loss_curve, label=label)
        floor = runs[0].metrics.loss_floor
        if floor is not None:
            axis.axhline(floor, color="gray", linestyle="--", label="entropy floor")
        axis.set(title=workload, xlabel="optimizer step", ylabel="training loss (nats/token)")
        axis.legend(fontsize="small")
    return save(figure, path)
