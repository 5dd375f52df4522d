"""Runs a suite: one worker process per run, one record appended per run, resumable.

A worker process per run means a crash, an out-of-memory kill or a leaked CUDA context
cannot take the suite down, and every run's memory counters start from a clean process.

Workers are forked from a fork server that has imported torch, transformers, peft,
bitsandbytes and our modules once: a tiny run then starts in a fraction of a second instead
of the five or so seconds those imports take in a fresh interpreter. The server itself never
touches CUDA or trains, so each worker still starts with no device state and no optimizer,
model or data of another run.

Every way a run can end becomes its record (results/schema.py STATUSES): an exception in
the worker is classified there; a worker that dies is classified here from its exit signal
and the kernel's OOM-kill count; a run past --run-timeout is stopped and recorded timeout;
SIGINT or SIGTERM to the harness stops the current worker (SIGTERM, then SIGKILL after a
grace period), records it killed, and stops the suite. Workers die with the harness.

A run on several processes (spec nproc or nnodes above 1) is started through torchrun instead
(torchrun_worker.py), with the same outcome file and the same ways of ending.
"""

import ctypes
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from multiprocessing import forkserver
from pathlib import Path

import torch

from results.records import append_record, finished_run_ids, results_lock
from results.schema import FINISHED, Record
from suites.load import PlannedRun, Suite
from torchrun_worker import TorchrunProcess

WORKER_PRELOAD = ["train", "meters.environment"]
"""Modules the fork server imports once for every worker (train imports the rest)."""
WORKERS = multiprocessing.get_context("forkserver")
WORKERS.set_forkserver_preload(WORKER_PRELOAD)
GRACE_S = 10.0
"""Seconds a worker gets to stop after SIGTERM before it is killed."""
PR_SET_PDEATHSIG = 1


class RunStopped(Exception):
    """SIGINT or SIGTERM reached the harness during a run; `record` is that run's record."""

    def __init__(self, signal_number: int, record: Record | None = None):
        super().__init__(f"stopped by {signal.Signals(signal_number).name}")
        self.signal_number = signal_number
        self.record = record


def _raise_stop(signal_number, frame):
    raise RunStopped(signal_number)


def _classify(error: BaseException) -> str:
    from train import NonFiniteLoss

    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return "oom"
    if isinstance(error, NonFiniteLoss):
        return "nan"
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return "killed"
    return "error"


def _die_with_the_harness():
    """The kernel kills this worker when the fork server exits, and the fork server exits
    when the harness does, however it ends: no run trains on without a harness."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # The fork server exits once every holder of its "alive" pipe has closed it; it hands a
    # copy to each worker, so that it outlives its children. Ours closes that copy, leaving
    # the harness the only holder.
    alive_fd = forkserver._forkserver._forkserver_alive_fd
    if alive_fd is not None:
        os.close(alive_fd)
        forkserver._forkserver._forkserver_alive_fd = None
    if os.getppid() == 1:  # the fork server was gone before the line above took effect
        os._exit(1)


def _worker(spec_json: dict, outcome_path: str, train_function, progress: bool, checkpoint_dir: str):
    """Runs in the child: set up, train, and write the outcome (success or caught failure) as
    the record's fields in JSON."""
    _die_with_the_harness()
    outcome = train_outcome(spec_json, train_function, progress, checkpoint_dir)
    Path(outcome_path).write_text(json.dumps(outcome))


def train_outcome(spec_json: dict, train_function, progress: bool, checkpoint_dir: str) -> dict:
    """Train and return the outcome (success or caught failure) as the record's fields; also
    what each rank of a run on several processes does (torchrun_worker.py)."""
    outcome = {}
    try:
        from meters.environment import environment
        from suites.spec import RunSpec, resolve_device
        from train import divergence

        spec = RunSpec(**spec_json)
        outcome["environment"] = asdict(environment(resolve_device(spec.device)))
        metrics, memory = train_function(spec, progress=progress, checkpoint_dir=Path(checkpoint_dir))
        diverged = divergence(metrics)
        outcome.update(metrics=asdict(metrics), memory=asdict(memory), status="diverged" if diverged else "ok",
                       error=diverged)
    except BaseException as error:  # noqa: BLE001 - every failure must become a record
        outcome.update(
            status=_classify(error),
            error=f"{type(error).__name__}: {error}",
            traceback=traceback.format_exc(limit=-8),
        )
    return outcome


def _oom_kills() -> int | None:
    """The kernel's count of OOM kills since boot (/proc/vmstat), or None where it has none."""
    try:
        with open("/proc/vmstat") as vmstat:
            return next((int(line.split()[1]) for line in vmstat if line.startswith("oom_kill ")), None)
    except OSError:
        return None


def _exit_outcome(exitcode: int, oom_kills_before: int | None) -> dict:
    """The outcome of a worker that died without writing one."""
    if exitcode >= 0:
        return {"status": "error", "error": f"worker process exited with code {exitcode} without a result"}
    name = signal.Signals(-exitcode).name
    oom_kills_after = _oom_kills()
    if exitcode == -signal.SIGKILL and None not in (oom_kills_before, oom_kills_after) and oom_kills_after > oom_kills_before:
        return {"status": "oom", "error": f"worker killed by the kernel's OOM killer (/proc/vmstat oom_kill "
                                          f"{oom_kills_before} -> {oom_kills_after}): out of host memory"}
    return {"status": "killed", "error": f"worker killed by {name} from outside the harness"}


def _stop(worker):
    """SIGTERM, then SIGKILL after GRACE_S."""
    worker.terminate()
    worker.join(GRACE_S)
    if worker.is_alive():
        worker.kill()
        worker.join()


def run_one(planned: PlannedRun, suite_name: str, train_function, progress: bool = True,
            timeout_s: float | None = None, checkpoint_dir: Path | None = None) -> Record:
    """Run one spec in a fresh process and return its record; RunStopped (with the record)
    when the harness is told to stop meanwhile. With spec.checkpoint_every the run keeps its
    checkpoints in checkpoint_dir and resumes from the last one there."""
    started = time.time()
    stopped_by = None
    with tempfile.TemporaryDirectory() as scratch:
        outcome_path = os.path.join(scratch, "outcome.json")
        if planned.spec.world_size > 1:
            worker = TorchrunProcess(planned.spec, outcome_path, train_function, progress, str(checkpoint_dir))
        else:
            worker = WORKERS.Process(target=_worker, args=(planned.spec.to_json(), outcome_path, train_function,
                                                           progress, str(checkpoint_dir)))
        oom_kills_before = _oom_kills()
        try:
            worker.start()
            worker.join(timeout_s)
        except RunStopped as stop:
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signal_number, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
            stopped_by = stop.signal_number
        if stopped_by is not None:
            if worker.pid is not None:
                _stop(worker)
            name = signal.Signals(stopped_by).name
            outcome = {"status": "killed", "error": f"the harness was stopped by {name} during this run"}
        elif worker.is_alive():
            _stop(worker)
            outcome = {"status": "timeout", "error": f"ran past --run-timeout {timeout_s:g} s and was stopped"}
        elif os.path.exists(outcome_path):
            outcome = json.loads(Path(outcome_path).read_text())
        else:
            outcome = _exit_outcome(worker.exitcode, oom_kills_before)
    record = Record.from_json(
        {
            "run_id": planned.spec.run_id,
            "suite": suite_name,
            "label": planned.label,
            "spec": planned.spec.to_json(),
            "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
            "wall_s": time.time() - started,
            "world_size": planned.spec.world_size,
            **outcome,
        }
    )
    if stopped_by is not None:
        raise RunStopped(stopped_by, record)
    return record


def checkpoints_of(results_path: Path) -> Path:
    """Where the runs of a results file keep their checkpoints: one folder per run id."""
    return Path(results_path).parent / "checkpoints" / Path(results_path).stem


def pending_runs(suite: Suite, results_path: Path, retry_timeouts: bool) -> list[PlannedRun]:
    """The suite's runs not finished in results_path (a timed-out one again with retry_timeouts).
    Call it holding the results file's lock."""
    done = finished_run_ids(results_path, retried=("timeout",) if retry_timeouts else ())
    return [run for run in suite.runs if run.spec.run_id not in done]


def run_suite(suite: Suite, results_path: Path, train_function=None, progress: bool = True,
              timeout_s: float | None = None, retry_timeouts: bool = False) -> list[Record]:
    """Run every planned run not already finished in results_path, holding its lock; returns
    the new records. RunStopped when SIGINT or SIGTERM arrives (the run in progress recorded)."""
    if train_function is None:
        from train import train as train_function
    handlers = {number: signal.signal(number, _raise_stop) for number in (signal.SIGINT, signal.SIGTERM)}
    records = []
    try:
        with results_lock(results_path):
            pending = pending_runs(suite, results_path, retry_timeouts)
            print(f"{suite.name}: {len(suite.runs)} runs, {len(suite.runs) - len(pending)} already finished, "
                  f"{len(pending)} to run -> {results_path}")
            for index, planned in enumerate(pending, 1):
                spec = planned.spec
                print(f"[{index}/{len(pending)}] {planned.label} {spec.workload}-{spec.size} seed {spec.seed} "
                      f"({spec.run_id})")
                checkpoint_dir = checkpoints_of(results_path) / spec.run_id
                try:
                    record = run_one(planned, suite.name, train_function, progress, timeout_s, checkpoint_dir)
                except RunStopped as stopped:
                    if stopped.record is not None:
                        append_record(results_path, stopped.record)
                        records.append(stopped.record)
                        print(f"    killed: {stopped.record.error}")
                    raise
                append_record(results_path, record)
                records.append(record)
                if record.status in FINISHED:  # a run that will not run again needs no checkpoint
                    shutil.rmtree(checkpoint_dir, ignore_errors=True)
                summary = record.error or f"final loss {record.metrics.final_loss:.4f}"
                print(f"    {record.status}: {summary} ({record.wall_s:.1f} s)")
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    return records
