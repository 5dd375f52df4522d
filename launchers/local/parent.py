"""The local launcher's parent side: one worker process per run on this machine, one after
another; `run_one` is also what a Slurm job runs inside (launchers/slurm/child.py).

A worker process per run means a crash, an out-of-memory kill or a leaked CUDA context
cannot take the suite down, and every run's memory counters start from a clean process.

Workers are forked from a fork server that has imported torch, transformers, our modules and
what the session's methods and workloads import on first use (peft, bitsandbytes, scikit-learn,
...) once: a tiny run then starts in a fraction of a second instead of the five or so seconds
those imports take in a fresh interpreter. The server itself never touches CUDA or trains, so
each worker still starts with no device state and no optimizer, model or data of another run.

Every way a run can end becomes its record (core/statuses.py): an exception in the worker is
classified there (training/outcome.py); a worker that dies is classified here from its exit
signal and the kernel's OOM-kill count; a run past --run-timeout is stopped and recorded
timeout; SIGINT or SIGTERM to the harness stops the current worker (SIGTERM, then SIGKILL
after a grace period), records it killed, and stops the suite. Workers die with the harness.

A run on several processes (spec nproc or nnodes above 1) is started through torchrun instead
(launchers/torchrun/), with the same outcome file and the same ways of ending.
"""

import json
import multiprocessing
import os
import signal
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict
from datetime import datetime, timezone
from multiprocessing import forkserver
from pathlib import Path

import torch

from core.plan import PlannedRun
from core.statuses import Status
from launchers.base import RunSettings, RunStopped
from launchers.local.child import worker
from launchers.suite_runner import STOP_SIGNALS, checkpoints_of
from launchers.torchrun.parent import TorchrunProcess
from methods import modules_of
from results.schema import Record
from training.checkpoints import set_aside_unreadable
from training.loop import train
from training.setting import run_setting
from workloads import WORKLOADS

WORKER_PRELOAD = ["training.outcome", "launchers.local.child"]
"""Modules the fork server imports once for every worker (they import torch, transformers and
the workloads); a session adds what its runs' methods and workloads import on first use
(preload_modules_of)."""
WORKERS = multiprocessing.get_context("forkserver")
WORKERS.set_forkserver_preload(WORKER_PRELOAD)
GRACE_S = 10.0
"""Seconds a worker gets to stop after SIGTERM before it is killed."""


def preload_modules_of(runs: list[PlannedRun]):
    """The fork server, not yet started, will also import what these runs' methods and workloads
    import on first use (methods.modules_of, Workload.imported_on_first_use): once, not once per
    worker, and only those (bitsandbytes alone takes seconds to import, scikit-learn over one)."""
    methods = modules_of(run.spec.method for run in runs)
    workloads = [module for name in dict.fromkeys(run.spec.workload for run in runs)
                 for module in WORKLOADS[name].imported_on_first_use]
    WORKERS.set_forkserver_preload(list(dict.fromkeys([*WORKER_PRELOAD, *methods, *workloads])))


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
        return {"status": Status.ERROR, "error": f"worker process exited with code {exitcode} without a result"}
    name = signal.Signals(-exitcode).name
    oom_kills_after = _oom_kills()
    if exitcode == -signal.SIGKILL and None not in (oom_kills_before, oom_kills_after) and oom_kills_after > oom_kills_before:
        return {"status": Status.OOM, "error": f"worker killed by the kernel's OOM killer (/proc/vmstat oom_kill "
                                               f"{oom_kills_before} -> {oom_kills_after}): out of host memory"}
    return {"status": Status.KILLED, "error": f"worker killed by {name} from outside the harness"}


def _stop(worker_process):
    """SIGTERM, then SIGKILL after GRACE_S."""
    worker_process.terminate()
    worker_process.join(GRACE_S)
    if worker_process.is_alive():
        worker_process.kill()
        worker_process.join()


def _stop_the_fork_server():
    """A stop that came while the fork server was still starting the worker (the first start
    imports torch and the rest, seconds): the worker has no pid yet and would be forked after the
    harness is gone. Ending the fork server instead means it never is."""
    server_pid = forkserver._forkserver._forkserver_pid
    if server_pid is not None:
        os.kill(server_pid, signal.SIGKILL)


def run_one(planned: PlannedRun, suite_name: str, train_function, progress: bool = True,
            timeout_s: float | None = None, checkpoint_dir: Path | None = None, waiting=nullcontext) -> Record:
    """Run one spec in a fresh process and return its record; RunStopped (with the record)
    when a signal handler raises it while the run is waited on (inside `waiting()`). With
    spec.checkpoint_every the run keeps its checkpoints in checkpoint_dir and resumes from the
    last one there."""
    started = time.time()
    stopped_by = None
    set_aside = set_aside_unreadable(checkpoint_dir) if planned.spec.checkpoint_every and checkpoint_dir else None
    with tempfile.TemporaryDirectory() as scratch:
        outcome_path = os.path.join(scratch, "outcome.json")
        if planned.spec.world_size > 1:
            process = TorchrunProcess(planned.spec, outcome_path, train_function, progress, str(checkpoint_dir))
        else:
            process = WORKERS.Process(target=worker, args=(planned.spec.to_json(), outcome_path, train_function,
                                                           progress, str(checkpoint_dir), os.getpid()))
        oom_kills_before = _oom_kills()
        try:
            with waiting():
                process.start()
                process.join(timeout_s)
        except RunStopped as stop:
            for signal_number in STOP_SIGNALS:
                signal.signal(signal_number, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
            stopped_by = stop.signal_number
        if stopped_by is not None:
            if process.pid is not None:
                _stop(process)
            else:
                _stop_the_fork_server()
            name = signal.Signals(stopped_by).name
            outcome = {"status": Status.KILLED, "error": f"the harness was stopped by {name} during this run"}
        elif process.is_alive():
            _stop(process)
            outcome = {"status": Status.TIMEOUT, "error": f"ran past --run-timeout {timeout_s:g} s and was stopped"}
        elif os.path.exists(outcome_path):
            outcome = json.loads(Path(outcome_path).read_text())
        else:
            outcome = _exit_outcome(process.exitcode, oom_kills_before)
    record = Record.from_json(
        {
            "run_id": planned.spec.run_id,
            "suite": suite_name,
            "label": planned.label,
            "spec": planned.spec.to_json(),
            "setting": asdict(run_setting(planned.spec)),
            "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
            "wall_s": time.time() - started,
            "world_size": planned.spec.world_size,
            **outcome,
            "notes": ([set_aside] if set_aside else []) + outcome.get("notes", []),
        }
    )
    if stopped_by is not None:
        raise RunStopped(stopped_by, record)
    return record


class LocalSession:
    """The runs one after another on this machine, each in its own worker process."""

    def __init__(self, options, results_path: Path, settings: RunSettings):
        self.results_path = results_path
        self.settings = settings

    def check(self, runs: list[PlannedRun]):
        on_cuda = [run for run in runs if run.spec.device.startswith("cuda")]
        if on_cuda and not torch.cuda.is_available():
            raise ValueError(f"device = {on_cuda[0].spec.device!r} ({len(on_cuda)} runs) but this machine has no CUDA "
                             "device (torch.cuda.is_available() is False); --set device=cpu runs them here")
        wider = [run for run in on_cuda if run.spec.nproc > torch.cuda.device_count()]
        if wider:
            raise ValueError(f"nproc = {wider[0].spec.nproc} ranks on a node with {torch.cuda.device_count()} CUDA "
                             "devices; one rank per GPU")

    def plan(self, pending: list[PlannedRun]) -> str:
        return f"{len(pending)} to run"

    def run(self, suite_name: str, pending: list[PlannedRun], stops):
        train_function = self.settings.train_function or train
        preload_modules_of(pending)
        for index, planned in enumerate(pending, 1):
            print(f"[{index}/{len(pending)}] {planned.description} ({planned.spec.run_id}) started", flush=True)
            record = run_one(planned, suite_name, train_function, self.settings.progress, self.settings.timeout_s,
                             checkpoints_of(self.results_path) / planned.spec.run_id, stops.waiting)
            yield planned, record, planned.spec.run_id
        stops.check()
