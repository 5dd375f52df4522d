"""The child side of a Slurm run: what each job runs (submitit unpickles run_as_job there). The
run goes through the local launcher's run_one, as a local run does: the same worker process, the
same record, the same statuses; Slurm's own ways of ending a job become records too."""

import signal
from dataclasses import replace
from pathlib import Path

import submitit

from core.plan import PlannedRun
from core.statuses import Status
from launchers.base import RunStopped
from launchers.local.parent import run_one
from training.loop import train

TIME_LIMIT_SIGNAL = getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}")
"""What Slurm sends a submitit job shortly before its time limit."""
JOB_SIGNALS = (signal.SIGINT, signal.SIGTERM, TIME_LIMIT_SIGNAL)


def _stop_the_run(signal_number, frame):
    # A second signal (Slurm's SIGTERM after its warning) must not cut run_one's clean-up short.
    for number in JOB_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    raise RunStopped(signal_number)


def run_as_job(planned: PlannedRun, suite_name: str, train_function, progress: bool, timeout_s: float | None,
               checkpoint_dir: str) -> dict:
    """Runs in the job: the run in its own worker, as a local run; its record as JSON. Its time
    limit's warning (submitit asks for SIGUSR2 90 s before) records timeout; scancel or
    preemption (SIGTERM) records killed."""
    for number in JOB_SIGNALS:
        signal.signal(number, _stop_the_run)
    try:
        record = run_one(planned, suite_name, train_function or train, progress, timeout_s, Path(checkpoint_dir))
    except RunStopped as stopped:
        if stopped.signal_number == TIME_LIMIT_SIGNAL:
            record = replace(stopped.record, status=Status.TIMEOUT,
                             error="reached the job's time limit (--time-limit, launcher.slurm.time_limit_min) and "
                                   "was stopped")
        else:
            name = signal.Signals(stopped.signal_number).name
            record = replace(stopped.record,
                             error=f"the job was stopped by {name} (scancel or preemption) during this run")
    return record.to_json()
