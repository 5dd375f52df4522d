"""Plots of run records (matplotlib, PNG, no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen before pyplot loads


def loss_curves(records: list[dict], path: Path):
    """Training loss against step, one line per successful run, one panel per workload."""
    by_workload: dict[str, list[dict]] = {}
    for record in records:
        if record["status"] == "ok":
            spec = record["spec"]
            by_workload.setdefault(f"{spec['workload']}-{spec['size']}", []).append(record)
    if not by_workload:
        return None
    figure, axes = plt.subplots(1, len(by_workload), figsize=(6 * len(by_workload), 4), squeeze=False)
    for axis, (workload, runs) in zip(axes[0], by_workload.items()):
        for record in runs:
            label = f"{record['label']} (seed {record['spec']['seed']})"
            axis.plot(record["metrics"]["loss_curve"], label=label)
        floor = runs[0]["metrics"].get("loss_floor")
        if floor is not None:
            axis.axhline(floor, color="gray", linestyle="--", label="entropy floor")
        axis.set(title=workload, xlabel="optimizer step", ylabel="training loss (nats/token)")
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
