"""Paper against ours: where a run or a traced estimate matches a setting of the GaLore paper
(../shared/REFERENCE.md), our figure beside the paper's with the ratio. Estimated and measured
figures sit in separate columns, never mixed."""

from statistics import mean

import pandas as pd

from core.statuses import RecordKind, Status
from core.units import GB  # the paper's G: its figures add up in 10^9 bytes (estimates/paper_table.py)
from estimates.paper_numbers import PAPER_7B_PEAK_GB, PAPER_PERPLEXITY, PAPER_RANKS, PAPER_SIZES, PAPER_TOTAL_G
from results.schema import Record

ESTIMATED, MEASURED = "ours, traced estimate", "ours, measured"


def _ok(records: list[Record], kind: str) -> list[Record]:
    return [r for r in records if r.kind == kind and r.status == Status.OK and r.spec.workload == "llama"]


def _weights_and_state_at_step_end(record: Record) -> int | None:
    breakdown = record.memory.tracker_at_step_end_bytes
    if not breakdown:
        return None
    return breakdown["trainable_weights"] + breakdown["frozen_weights"] + breakdown["optimizer_state"]


def _table2_setting(record: Record, method: str, size: str) -> bool:
    """A record of Table 2's method, size and rank (the rank it trained at, its default resolved)."""
    spec = record.spec
    if spec.method != method or spec.size != size:
        return False
    rank = record.setting.rank
    table_rank = PAPER_RANKS[PAPER_SIZES.index(size)]
    # Records before schema v3 name no rank where GaLore took its size's default; they are
    # matched as before, as if at the table's rank (true at 60M-350M; at 1B the default is the
    # scripts' 1024, workloads/sizes.toml).
    return method == "full" or rank == table_rank or (method == "galore" and rank is None)


def _row(setting: str, method: str, paper: float, unit: str, estimated: list[float], measured: list[float]) -> dict:
    row = {"paper setting": setting, "method": method, "unit": unit, "paper": paper}
    for name, values in ((ESTIMATED, estimated), (MEASURED, measured)):
        figure = mean(values) if values else None
        row[name] = figure
        row[f"{name} / paper"] = figure / paper if figure else None
    return row


def _table2_memory(estimates: list[Record], runs: list[Record]) -> list[dict]:
    rows = []
    for method, totals in PAPER_TOTAL_G.items():
        for size, paper in zip(PAPER_SIZES, totals):
            match = lambda r: _table2_setting(r, method, size) and r.spec.dtype == "bfloat16"  # noqa: E731
            estimated = [_weights_and_state_at_step_end(r) / GB for r in estimates
                         if match(r) and _weights_and_state_at_step_end(r)]
            measured = [r.memory.weights_and_state_bytes / GB for r in runs if match(r) and r.memory.weights_and_state_bytes]
            if estimated or measured:
                rows.append(_row(f"Table 2 memory: {size}, weights + optimizer state, BF16", method, paper, "GB",
                                 estimated, measured))
    return rows


def _table2_perplexity(runs: list[Record]) -> list[dict]:
    rows = []
    for method, perplexities in PAPER_PERPLEXITY.items():
        for size, paper in zip(PAPER_SIZES, perplexities):
            measured = [r.metrics.perplexity for r in runs if _table2_setting(r, method, size)
                        and r.setting.corpus == "c4" and r.metrics.perplexity]
            if measured:
                rows.append(_row(f"Table 2 perplexity: {size}, C4", method, paper, "ppl", [], measured))
    return rows


def _paper_7b(estimates: list[Record], runs: list[Record]) -> list[dict]:
    rows = []
    for (method, seq_len, rank), paper in PAPER_7B_PEAK_GB.items():
        match = lambda r: (r.spec.method == method and r.spec.size == "7b" and r.spec.seq_len == seq_len  # noqa: E731
                           and r.spec.batch_size == 1 and r.spec.dtype == "bfloat16"
                           and r.setting.rank == rank)
        estimated = [r.memory.tracker_peak_bytes / GB for r in estimates if match(r)]
        measured = [r.memory.tracker_peak_bytes / GB for r in runs if match(r) and r.memory.tracker_peak_bytes]
        if estimated or measured:
            setting = f"7B peak: batch 1, seq {seq_len}, BF16" + (f", rank {rank}" if rank else "")
            rows.append(_row(setting, method, paper, "GB", estimated, measured))
    return rows


def paper_comparison(records: list[Record]) -> pd.DataFrame:
    """One row per matched paper setting and method; an empty frame where nothing matches."""
    estimates, runs = _ok(records, RecordKind.TRACED_ESTIMATE), _ok(records, RecordKind.RUN)
    rows = _table2_memory(estimates, runs) + _table2_perplexity(runs) + _paper_7b(estimates, runs)
    return pd.DataFrame(rows)
