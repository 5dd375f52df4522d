"""Traced estimates of every method at every size: the data of memory-versus-size plots."""

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from estimates.traced import traced_record
from results.schema import Record
from suites.spec import RunSpec

GIB = 2**30


def grid_records(specs: list[RunSpec], suite: str, jobs: int) -> tuple[list[Record], float]:
    """traced_record of every spec, `jobs` at once in forked processes (a trace is one
    process's single-threaded work), in the specs' order, and the wall seconds it took."""
    started = time.time()
    with ProcessPoolExecutor(max(1, min(jobs, len(specs))), mp_context=multiprocessing.get_context("fork")) as pool:
        records = list(pool.map(_traced, specs, [suite] * len(specs)))
    return records, time.time() - started


def _traced(spec: RunSpec, suite: str) -> Record:
    return traced_record(spec, label=spec.method, suite=suite)


def format_grid(records: list[Record]) -> str:
    """One line per estimate: method, size, checkpointing, traced peak and the steady and refresh
    steps' peaks apart."""
    lines = [f"{'method':<24}{'size':>6}{'ckpt':>5}{'peak GiB':>10}{'steady GiB':>12}{'refresh GiB':>13}"]
    for record in records:
        spec, memory = record.spec, record.memory
        head = f"{spec.method:<24}{spec.size:>6}{'yes' if spec.activation_checkpointing else 'no':>5}"
        if record.status != "ok":
            lines.append(f"{head}  could not be traced: {record.error}")
            continue
        refresh = memory.tracker_refresh_peak_bytes
        lines.append(f"{head}{memory.tracker_peak_bytes / GIB:>10.2f}{memory.tracker_steady_peak_bytes / GIB:>12.2f}"
                     f"{'-' if refresh is None else f'{refresh / GIB:.2f}':>13}")
    return "\n".join(lines)
