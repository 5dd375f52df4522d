"""Runs a suite on a Slurm cluster: each pending run is its own job, submitted with submitit,
and its record is appended by this harness as the job finishes, exactly once.

Inside the job the run goes through runner.run_one, as a local run does: the same worker
process, the same record, the same statuses. Slurm's own ways of ending a job become records
too: its time-limit warning (submitit asks for SIGUSR2 90 s before the limit) stops the worker
and records timeout; scancel or preemption (SIGTERM) records killed; a job that ends without
returning a record (killed outright, its node lost) is recorded from its Slurm state.

Resume works as for local runs, plus one file: the job id of every submitted, not yet recorded
run is kept in results/slurm/<results stem>/jobs.json (beside the jobs' logs and pickles). A
harness started again -- after it was stopped, killed, or logged out -- collects those jobs
when they finish instead of submitting them again, and submits only the runs neither finished
in the results file nor in flight. SIGINT or SIGTERM to the harness stops the waiting, not the
jobs: they run on, and the message says how to collect (run the same command) or cancel them.
"""

import json
import os
import shlex
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

from results.records import append_record, results_lock
from results.schema import FINISHED, Record
from runner import RunStopped, checkpoints_of, pending_runs, run_one
from suites.load import PlannedRun, Suite
from suites.slurm_options import SlurmOptions

REPO_ROOT = Path(__file__).resolve().parent
POLL_S = 2.0
"""Seconds between looks at the jobs in flight (a look reads the folder; sacct runs far less often)."""
TIME_LIMIT_SIGNAL = getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}")
"""What Slurm sends a submitit job shortly before its time limit."""
JOB_CLASSES = {"slurm": submitit.SlurmJob, "local": submitit.LocalJob}
"""The job class that re-attaches to a job id, by submitit cluster ("local" runs the same jobs
as local processes: the tests)."""
LOST_JOB_STATUSES = {
    "TIMEOUT": "timeout", "DEADLINE": "timeout", "OUT_OF_MEMORY": "oom", "CANCELLED": "killed",
    "PREEMPTED": "killed", "NODE_FAIL": "killed", "BOOT_FAIL": "killed", "INTERRUPTED": "killed",
}
"""The record status of a job that ended without a record, by its Slurm state (sacct's State;
INTERRUPTED is submitit's local one); any other state is an error."""


class JobsLeftRunning(Exception):
    """SIGINT or SIGTERM reached the harness while it waited: the jobs go on, and the message
    says how to collect or cancel them."""

    def __init__(self, signal_number: int, job_ids: list[str], results_path: Path):
        ids = " ".join(job_ids)
        super().__init__(
            f"stopped by {signal.Signals(signal_number).name}: {len(job_ids)} jobs left running ({ids}); "
            f"run the same command again to collect their records into {results_path}, or cancel them: scancel {ids}"
        )
        self.signal_number = signal_number


def jobs_folder_of(results_path: Path) -> Path:
    """Where the jobs of a results file keep their pickles, logs and the file of jobs in flight."""
    return Path(results_path).parent / "slurm" / Path(results_path).stem


def read_jobs_in_flight(folder: Path) -> dict[str, str]:
    """run id -> job id of every job submitted for a results file and not yet recorded."""
    path = folder / "jobs.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error.msg}); it maps run ids to the Slurm job ids in flight") from None


def _write_jobs_in_flight(folder: Path, jobs: dict[str, str]):
    # Written whole and renamed into place: a harness killed meanwhile leaves the old file or the new.
    path = folder / "jobs.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(jobs, indent=1, sort_keys=True) + "\n")
    os.replace(partial, path)


def _stop_the_run(signal_number, frame):
    # A second signal (Slurm's SIGTERM after its warning) must not cut run_one's clean-up short.
    for number in (signal.SIGINT, signal.SIGTERM, TIME_LIMIT_SIGNAL):
        signal.signal(number, signal.SIG_IGN)
    raise RunStopped(signal_number)


def run_as_job(planned: PlannedRun, suite_name: str, train_function, progress: bool, timeout_s: float | None,
               checkpoint_dir: str) -> dict:
    """Runs in the job: the run in its own worker, as a local run; its record as JSON."""
    if train_function is None:
        from train import train as train_function
    for number in (signal.SIGINT, signal.SIGTERM, TIME_LIMIT_SIGNAL):
        signal.signal(number, _stop_the_run)
    try:
        record = run_one(planned, suite_name, train_function, progress, timeout_s, Path(checkpoint_dir))
    except RunStopped as stopped:
        if stopped.signal_number == TIME_LIMIT_SIGNAL:
            record = replace(stopped.record, status="timeout",
                             error="reached the job's time limit (--time-limit, slurm.time_limit_min) and was stopped")
        else:
            name = signal.Signals(stopped.signal_number).name
            record = replace(stopped.record,
                             error=f"the job was stopped by {name} (scancel or preemption) during this run")
    return record.to_json()


def status_of_lost_job(state: str) -> str:
    """The status of a job that ended without a record, from its state ("CANCELLED by 1234")."""
    words = state.split()
    return LOST_JOB_STATUSES.get(words[0] if words else "", "error")


def _record_of(job, planned: PlannedRun, suite_name: str) -> Record:
    """The record the job returned, or one made from its state when it returned none."""
    try:
        return Record.from_json(job.result())
    except UncompletedJobError as error:  # the job died, or submitit failed around our function
        state = job.state
        return Record.from_json({
            "run_id": planned.spec.run_id, "suite": suite_name, "label": planned.label,
            "spec": planned.spec.to_json(), "status": status_of_lost_job(state),
            "error": f"job {job.job_id} ended {state} without a record; its log: {job.paths.stderr}",
            "traceback": str(error)[-4000:],
        })


def _executor(folder: Path, options: SlurmOptions, cluster: str):
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    # The job unpickles run_as_job by reference: it must import this repository from any directory.
    find_repo = [f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"]
    executor.update_parameters(
        timeout_min=options.time_limit_min, gpus_per_node=options.gpus_per_job or None,  # None: no --gpus flag
        slurm_partition=options.partition, slurm_account=options.account, slurm_setup=find_repo, local_setup=find_repo,
    )
    return executor


def _describe(planned: PlannedRun) -> str:
    spec = planned.spec
    return f"{planned.label} {spec.workload}-{spec.size} seed {spec.seed}"


def _submit(executor, planned: PlannedRun, suite_name: str, results_path: Path, train_function, progress: bool,
            timeout_s: float | None):
    """The run's job, named for squeue; ValueError with sbatch's reason when it refuses one."""
    executor.update_parameters(name=f"{suite_name}-{planned.label}-seed{planned.spec.seed}")
    try:
        return executor.submit(run_as_job, planned, suite_name, train_function, progress, timeout_s,
                               str((checkpoints_of(results_path) / planned.spec.run_id).absolute()))
    except FailedJobError as error:  # e.g. a partition or account the cluster does not know
        reason = (str(error).strip() or "no reason given").splitlines()[-1]
        raise ValueError(f"sbatch refused the job of {_describe(planned)}: {reason}; "
                         "jobs submitted before it run on, and a re-run collects them") from None


def _append_the_record_of(job, planned: PlannedRun, suite_name: str, results_path: Path) -> Record:
    record = _record_of(job, planned, suite_name)
    append_record(results_path, record)
    if record.status in FINISHED:  # a run that will not run again needs no checkpoint
        shutil.rmtree(checkpoints_of(results_path) / planned.spec.run_id, ignore_errors=True)
    return record


def run_suite_on_slurm(suite: Suite, results_path: Path, options: SlurmOptions, train_function=None,
                       progress: bool = True, timeout_s: float | None = None, retry_timeouts: bool = False,
                       cluster: str = "slurm") -> list[Record]:
    """Submit every planned run neither finished in results_path nor already in flight as its own
    job, and append each job's record as it finishes, holding the results file's lock; returns
    the new records. JobsLeftRunning when SIGINT or SIGTERM arrives (no record is lost: a re-run
    collects the jobs). `cluster` "local" runs the same jobs as local processes."""
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise ValueError("--launcher slurm submits with sbatch, which is not on this machine's PATH; "
                         "run from a Slurm login node")
    folder = jobs_folder_of(results_path)
    stops = []

    def note_the_stop(signal_number, frame):
        stops.append(signal_number)  # acted on between two whole steps: no job half recorded

    handlers = {number: signal.signal(number, note_the_stop) for number in (signal.SIGINT, signal.SIGTERM)}
    records = []
    try:
        with results_lock(results_path):
            pending = pending_runs(suite, results_path, retry_timeouts)
            submitted = read_jobs_in_flight(folder)
            in_flight = {run.spec.run_id: (run, JOB_CLASSES[cluster](folder, submitted[run.spec.run_id]))
                         for run in pending if run.spec.run_id in submitted}
            to_submit = [run for run in pending if run.spec.run_id not in submitted]
            print(f"{suite.name}: {len(suite.runs)} runs, {len(suite.runs) - len(pending)} already finished, "
                  f"{len(in_flight)} in flight from an earlier harness, {len(to_submit)} to submit -> {results_path}")
            folder.mkdir(parents=True, exist_ok=True)
            jobs = {run_id: job.job_id for run_id, (_, job) in in_flight.items()}
            _write_jobs_in_flight(folder, jobs)  # forgets jobs of runs since finished or gone from the suite

            executor = _executor(folder, options, cluster)
            for planned in to_submit:
                if stops:
                    raise JobsLeftRunning(stops[0], list(jobs.values()), results_path)
                job = _submit(executor, planned, suite.name, results_path, train_function, progress, timeout_s)
                jobs[planned.spec.run_id] = job.job_id
                _write_jobs_in_flight(folder, jobs)
                in_flight[planned.spec.run_id] = (planned, job)
            if to_submit:
                where = f"partition {options.partition}" if options.partition else "the default partition"
                print(f"submitted {len(to_submit)} jobs to {where} ({options.gpus_per_job} GPUs, "
                      f"{options.time_limit_min} min each); logs in {folder}")

            waited_for = len(in_flight)
            while in_flight:
                if stops:
                    raise JobsLeftRunning(stops[0], list(jobs.values()), results_path)
                for run_id, (planned, job) in list(in_flight.items()):
                    if not job.done():
                        continue
                    record = _append_the_record_of(job, planned, suite.name, results_path)
                    del in_flight[run_id], jobs[run_id]
                    _write_jobs_in_flight(folder, jobs)
                    records.append(record)
                    summary = record.error or f"final loss {record.metrics.final_loss:.4f}"
                    print(f"[{len(records)}/{waited_for}] {_describe(planned)} (job {job.job_id}): {record.status}: "
                          f"{summary} ({record.wall_s or 0:.1f} s)", flush=True)
                if in_flight:
                    time.sleep(POLL_S)
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    return records
