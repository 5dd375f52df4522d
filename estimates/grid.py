"""Traced estimates of every method at every size: the data of memory-versus-size plots."""

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from core.spec import RunSpec
from core.statuses import Status
from core.units import GIB
from estimates import EstimateRequest
from estimates.traced import traced_record
from results.records import append_record
from results.schema import Record


def grid_records(specs: list[RunSpec], suite: str, jobs: int, on_record=None) -> tuple[list[Record], float]:
    """traced_record of every spec, `jobs` at once in forked processes (a trace is one
    process's single-threaded work), in the specs' order, and the wall seconds it took;
    on_record(record) is called with each as it is ready, so a grid cut short keeps those done."""
    started = time.time()
    records = []
    with ProcessPoolExecutor(max(1, min(jobs, len(specs))), mp_context=multiprocessing.get_context("fork")) as pool:
        for record in pool.map(_traced, specs, [suite] * len(specs)):
            records.append(record)
            if on_record:
                on_record(record)
    return records, time.time() - started


def _traced(spec: RunSpec, suite: str) -> Record:
    return traced_record(spec, label=spec.method, suite=suite)


def format_grid(records: list[Record]) -> str:
    """One line per estimate: method, size, checkpointing, traced peak and the steady and refresh
    steps' peaks apart."""
    lines = [f"{'method':<24}{'size':>14}{'precision':>12}{'ckpt':>5}{'peak GiB':>10}{'steady GiB':>12}"
             f"{'refresh GiB':>13}"]
    for record in records:
        spec, memory = record.spec, record.memory
        head = (f"{spec.method:<24}{spec.size:>14}{spec.policy.name:>12}"
                f"{'yes' if spec.activation_checkpointing else 'no':>5}")
        if record.status != Status.OK:
            lines.append(f"{head}  could not be traced: {record.error}")
            continue
        refresh = memory.tracker_refresh_peak_bytes
        lines.append(f"{head}{memory.tracker_peak_bytes / GIB:>10.2f}{memory.tracker_steady_peak_bytes / GIB:>12.2f}"
                     f"{'-' if refresh is None else f'{refresh / GIB:.2f}':>13}")
    return "\n".join(lines)


def estimate_grid(specs: list[RunSpec], request: EstimateRequest) -> int:
    """`harness.py estimate --grid`: every spec traced, printed as one table and recorded."""
    if not request.records:
        raise ValueError("--grid writes estimate records: give --records PATH")
    records, wall_s = grid_records(specs, request.suite, request.jobs,
                                   on_record=lambda record: append_record(request.records, record))
    print(format_grid(records))
    print(f"{len(records)} estimate records appended to {request.records}; traced in {wall_s:.0f} s wall")
    return 1 if any(record.status != Status.OK for record in records) else 0
