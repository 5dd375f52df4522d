"""Shared plotting parts (matplotlib, PNG, no display needed) and the loss-against-tokens plot.

Every plot colours a method row the same way (`label_colors`) and puts its legend below the
panels, never over the data."""

import math
from pathlib import Path

import matplotlib

from core.statuses import RecordKind, Status

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen before pyplot loads

from reports.labels import row_key
from results.schema import Record  # noqa: E402

PANEL_WIDTH_IN, COLUMNS_OF_PANELS, DPI = 6.0, 2, 110


def ok_runs_by_workload(records: list[Record]) -> dict[str, list[Record]]:
    """Successful runs grouped by the table's workload name (a GLUE task gets its own panel)."""
    by_workload: dict[str, list[Record]] = {}
    for record in records:
        if record.status == Status.OK and record.kind == RecordKind.RUN:
            by_workload.setdefault(record.workload_name, []).append(record)
    return by_workload


def label_colors(labels: list[str]) -> dict[str, str]:
    """One colour per row label, in first-seen order, shared by every plot of the report."""
    ordered = list(dict.fromkeys(labels))
    cycle = plt.get_cmap("tab20").colors if len(ordered) > 10 else plt.get_cmap("tab10").colors
    return {label: cycle[index % len(cycle)] for index, label in enumerate(ordered)}


def panels(count: int, height_in: float):
    """A figure with `count` panels, two to a row (so it fits a laptop screen), and the panels."""
    columns = min(count, COLUMNS_OF_PANELS)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(PANEL_WIDTH_IN * columns, height_in * rows),
                                squeeze=False, layout="constrained")
    axes = list(axes.flat)
    for unused in axes[count:]:
        unused.set_visible(False)
    return figure, axes[:count]


def legend_below(figure, axes):
    """One legend for the whole figure, below the panels, from every panel's labelled artists."""
    entries = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        # As many columns as fit the figure's width, so no entry is cut off at the edges.
        entry_width_in = 0.6 + 0.075 * max(len(label) for label in entries)
        columns = max(1, min(len(entries), int(figure.get_figwidth() / entry_width_in)))
        figure.legend(entries.values(), entries.keys(), loc="outside lower center",
                      ncol=columns, fontsize="small", frameon=False)


def save(figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def loss_vs_tokens(records: list[Record], labels: dict[str, str], colors: dict[str, str], path: Path):
    """Training loss against tokens seen, one line per successful run (seeds share a colour), one
    panel per workload; the corpus's entropy floor dashed where known."""
    by_workload = ok_runs_by_workload(records)
    if not by_workload:
        return None
    figure, axes = panels(len(by_workload), 3.6)
    for axis, (workload, runs) in zip(axes, by_workload.items()):
        for record in runs:
            spec = record.spec
            tokens_per_step = spec.batch_size * spec.grad_accum * spec.seq_len
            steps = range(1, len(record.metrics.loss_curve) + 1)
            label = labels[row_key(record)]
            axis.plot([step * tokens_per_step for step in steps], record.metrics.loss_curve,
                      color=colors[label], linewidth=1.2, label=label)
        floor = runs[0].metrics.loss_floor
        if floor is not None:
            axis.axhline(floor, color="gray", linestyle="--", label="entropy floor of the corpus")
        axis.set(title=workload, xlabel="tokens seen (batch × accumulation × sequence length per step)",
                 ylabel="training loss (nats/token)")
        axis.grid(alpha=0.3)
    legend_below(figure, axes)
    return save(figure, path)
