"""Runs a suite: one worker process per run, one record appended per run, resumable.

A worker process per run means a crash, an out-of-memory kill or a leaked CUDA context
cannot take the suite down, and every run's memory counters start from a clean process.

Workers are forked from a fork server that has imported torch, transformers, peft,
bitsandbytes and our modules once: a tiny run then starts in a fraction of a second instead
of the five or so seconds those imports take in a fresh interpreter. The server itself never
touches CUDA or trains, so each worker still starts with no device state and no optimizer,
model or data of another run.
"""

import json
import multiprocessing
import os
import signal
import tempfile
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

from results.records import append_record, finished_run_ids
from results.schema import Record
from suites.load import PlannedRun, Suite

WORKER_PRELOAD = ["train", "meters.environment"]
"""Modules the fork server imports once for every worker (train imports the rest)."""
WORKERS = multiprocessing.get_context("forkserver")
WORKERS.set_forkserver_preload(WORKER_PRELOAD)


def _classify(error: BaseException) -> str:
    from train import NonFiniteLoss

    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return "oom"
    if isinstance(error, NonFiniteLoss):
        return "nan"
    return "error"


def _worker(spec_json: dict, outcome_path: str, train_function, progress: bool):
    """Runs in the child: train, and write the outcome (success or caught failure) as the
    record's fields in JSON."""
    from meters.environment import environment
    from suites.spec import RunSpec, resolve_device

    spec = RunSpec(**spec_json)
    outcome = {"environment": asdict(environment(resolve_device(spec.device)))}
    try:
        metrics, memory = train_function(spec, progress=progress)
        outcome.update(metrics=asdict(metrics), memory=asdict(memory), status="ok")
    except BaseException as error:  # noqa: BLE001 - every failure must become a record
        outcome.update(
            status=_classify(error),
            error=f"{type(error).__name__}: {error}",
            traceback=traceback.format_exc(limit=-8),
        )
    Path(outcome_path).write_text(json.dumps(outcome))


def _exit_outcome(exitcode: int) -> dict:
    """The outcome of a worker that died without writing one."""
    if exitcode == -signal.SIGKILL:
        # The kernel's out-of-memory killer ends processes with SIGKILL.
        return {"status": "oom", "error": "worker killed by SIGKILL (most likely out of host memory)"}
    return {"status": "error", "error": f"worker process exited with code {exitcode} without a result"}


def run_one(planned: PlannedRun, suite_name: str, train_function, progress: bool = True) -> Record:
    """Run one spec in a fresh process and return its record."""
    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        outcome_path = os.path.join(scratch, "outcome.json")
        worker = WORKERS.Process(
            target=_worker, args=(planned.spec.to_json(), outcome_path, train_function, progress)
        )
        worker.start()
        worker.join()
        if os.path.exists(outcome_path):
            outcome = json.loads(Path(outcome_path).read_text())
        else:
            outcome = _exit_outcome(worker.exitcode)
    return Record.from_json(
        {
            "run_id": planned.spec.run_id,
            "suite": suite_name,
            "label": planned.label,
            "spec": planned.spec.to_json(),
            "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
            "wall_s": time.time() - started,
            **outcome,
        }
    )


def run_suite(suite: Suite, results_path: Path, train_function=None, progress: bool = True) -> list[Record]:
    """Run every planned run not already finished in results_path; returns the new records."""
    if train_function is None:
        from train import train as train_function
    done = finished_run_ids(results_path)
    pending = [run for run in suite.runs if run.spec.run_id not in done]
    print(f"{suite.name}: {len(suite.runs)} runs, {len(suite.runs) - len(pending)} already finished, "
          f"{len(pending)} to run -> {results_path}")
    records = []
    for index, planned in enumerate(pending, 1):
        spec = planned.spec
        print(f"[{index}/{len(pending)}] {planned.label} {spec.workload}-{spec.size} seed {spec.seed} ({spec.run_id})")
        record = run_one(planned, suite.name, train_function, progress)
        append_record(results_path, record)
        records.append(record)
        summary = record.error or f"final loss {record.metrics.final_loss:.4f}"
        print(f"    {record.status}: {summary} ({record.wall_s:.1f} s)")
    return records
