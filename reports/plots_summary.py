"""Plots of the summary (means over seeds): throughput bars and memory against loss with the
Pareto front."""

from pathlib import Path

import pandas as pd

from reports.columns import MIB
from reports.plots import legend_below, panels, save
from reports.speed_noise import marked
from reports.summary import UNRELIABLE

TOKENS_PER_S = "metrics.tokens_per_s"
PEAK_BYTES = "memory.tracker_peak_bytes"


def _by_workload(summary: pd.DataFrame, needed: list[str]) -> dict[str, pd.DataFrame]:
    rows = summary.dropna(subset=needed)
    return {workload: group for workload, group in rows.groupby("workload", sort=False)}


def throughput_bars(summary: pd.DataFrame, colors: dict[str, str], path: Path):
    """Tokens/s per method row, mean over seeds with the std as an error bar, one panel per workload;
    a row whose figure is noise (reports/speed_noise.py) is marked in its name."""
    by_workload = _by_workload(summary, [f"{TOKENS_PER_S}_mean"])
    if not by_workload:
        return None
    figure, axes = panels(len(by_workload), 4.2)
    for axis, (workload, rows) in zip(axes, by_workload.items()):
        names = [marked(method, noisy) for method, noisy in zip(rows.method, rows[UNRELIABLE])]
        axis.barh(names, rows[f"{TOKENS_PER_S}_mean"], xerr=rows[f"{TOKENS_PER_S}_std"].fillna(0),
                  color=[colors[method] for method in rows.method])
        axis.invert_yaxis()
        axis.set(title=f"{workload}: throughput", xlabel="tokens/s (non-padding tokens per second, after warm-up)")
        axis.grid(axis="x", alpha=0.3)
    return save(figure, path)


def loss_key(rows: pd.DataFrame) -> str:
    """The loss the scatter uses: held-out loss where every row has one, else the final training loss."""
    return "metrics.eval_loss" if rows["metrics.eval_loss_mean"].notna().all() else "metrics.final_loss"


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both memory and loss (lower is better on both), by memory."""
    front = []
    for memory, loss in sorted(points):
        if not front or loss < front[-1][1]:
            front.append((memory, loss))
    return front


def memory_vs_loss(summary: pd.DataFrame, colors: dict[str, str], path: Path):
    """Tracked peak against loss per method row, one panel per workload, the Pareto front drawn."""
    by_workload = _by_workload(summary, [f"{PEAK_BYTES}_mean", "metrics.final_loss_mean"])
    if not by_workload:
        return None
    figure, axes = panels(len(by_workload), 4.0)
    for axis, (workload, rows) in zip(axes, by_workload.items()):
        key = loss_key(rows)
        memory_mib, loss = rows[f"{PEAK_BYTES}_mean"] / MIB, rows[f"{key}_mean"]
        for method, x, y in zip(rows.method, memory_mib, loss):
            axis.scatter(x, y, color=colors[method], s=40, label=method, zorder=3)
            # Named beside the point too: methods with the same memory sit on top of each other.
            axis.annotate(method, (x, y), xytext=(5, 3), textcoords="offset points", fontsize="x-small")
        front = pareto_front(list(zip(memory_mib, loss)))
        axis.plot(*zip(*front), color="black", linewidth=1, linestyle=":", drawstyle="steps-post",
                  label="Pareto front", zorder=2)
        loss_name = "eval loss" if key == "metrics.eval_loss" else "final training loss"
        axis.set(title=f"{workload}: memory against loss", xlabel="tracked peak memory (MiB, 2^20 bytes)",
                 ylabel=f"{loss_name} (nats/token or the task's loss)")
        axis.grid(alpha=0.3)
    legend_below(figure, axes)
    return save(figure, path)
