"""From traced estimate records: peak memory against model size per method, with the memory
of common GPUs drawn across, so a reader sees which method fits their card."""

from pathlib import Path

from core.statuses import RecordKind, Status
from core.units import GB
from reports.estimates_table import estimate_setting
from reports.labels import row_key
from reports.plots import legend_below, panels, save
from results.schema import Record

CARDS_GB = ((24, "24 GB (RTX 4090, L4)"), (40, "40 GB (A100 40GB)"), (80, "80 GB (A100/H100 80GB)"))


def _setting(record: Record) -> str:
    return f"{record.spec.workload}, {estimate_setting(record.spec)}"


def estimates_by_setting(records: list[Record]) -> dict[str, list[Record]]:
    """Successful traced estimates grouped by workload, batch, sequence length, precision policy
    and ranks."""
    by_setting: dict[str, list[Record]] = {}
    for record in records:
        if record.kind == RecordKind.TRACED_ESTIMATE and record.status == Status.OK and record.memory.tracker_peak_bytes:
            by_setting.setdefault(_setting(record), []).append(record)
    return by_setting


def _weight_bytes(record: Record) -> int:
    breakdown = record.memory.tracker_at_peak_bytes or {}
    return breakdown.get("trainable_weights", 0) + breakdown.get("frozen_weights", 0)


def memory_vs_size(records: list[Record], labels: dict[str, str], colors: dict[str, str], path: Path):
    """Traced peak (GB) against model size, one line per method, one panel per setting; sizes
    ordered by full training's weight bytes, on a log memory axis."""
    by_setting = estimates_by_setting(records)
    if not by_setting:
        return None
    figure, axes = panels(len(by_setting), 4.4)
    for axis, (setting, estimates) in zip(axes, by_setting.items()):
        sizes = sorted({r.spec.size for r in estimates},
                       key=lambda size: max(_weight_bytes(r) for r in estimates if r.spec.size == size))
        for label in dict.fromkeys(labels[row_key(r)] for r in estimates):
            points = sorted((sizes.index(r.spec.size), r.memory.tracker_peak_bytes / GB)
                            for r in estimates if labels[row_key(r)] == label)
            axis.plot(*zip(*points), marker="o", color=colors.get(label), label=label)
        for gb, card in CARDS_GB:
            axis.axhline(gb, color="gray", linestyle="--", linewidth=0.8)
            axis.annotate(card, (0, gb), xycoords=("axes fraction", "data"), xytext=(4, 2),
                          textcoords="offset points", fontsize="x-small", color="dimgray")
        axis.set_yscale("log")
        axis.set_ylim(top=2 * CARDS_GB[-1][0])  # room above the largest card's line for its name
        axis.set_xticks(range(len(sizes)), sizes)
        axis.set(title=f"traced estimate: {setting}", xlabel="model size", ylabel="peak memory (GB, 10^9 bytes, log)")
        axis.grid(alpha=0.3)
    legend_below(figure, axes)
    return save(figure, path)
