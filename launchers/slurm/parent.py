"""The Slurm launcher's parent side: each pending run is its own job, submitted with submitit,
and its record comes back to this harness as the job finishes (launchers/suite_runner.py
appends it, exactly once). The job runs launchers/slurm/child.py. A job that ends without
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
from dataclasses import asdict
from pathlib import Path

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

from core.plan import PlannedRun
from core.statuses import Status
from launchers.base import RunSettings, RunStopped, SuiteStopped
from launchers.slurm.child import run_as_job
from launchers.slurm.options import SlurmOptions
from launchers.suite_runner import checkpoints_of
from results.schema import Record
from training.setting import run_setting

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 2.0
"""Seconds between looks at the jobs in flight (a look reads the folder; sacct runs far less often)."""
JOB_CLASSES = {"slurm": submitit.SlurmJob, "local": submitit.LocalJob}
"""The job class that re-attaches to a job id, by submitit cluster ("local" runs the same jobs
as local processes: the tests)."""
LOST_JOB_STATUSES = {
    "TIMEOUT": Status.TIMEOUT, "DEADLINE": Status.TIMEOUT, "OUT_OF_MEMORY": Status.OOM, "CANCELLED": Status.KILLED,
    "PREEMPTED": Status.KILLED, "NODE_FAIL": Status.KILLED, "BOOT_FAIL": Status.KILLED, "INTERRUPTED": Status.KILLED,
}
"""The record status of a job that ended without a record, by its Slurm state (sacct's State;
INTERRUPTED is submitit's local one); any other state is an error."""


def jobs_left_running(signal_number: int, job_ids: list[str], results_path: Path) -> SuiteStopped:
    """The harness stopped while it waited: the jobs go on, and the message says how to collect
    or cancel them."""
    ids = " ".join(job_ids)
    return SuiteStopped(
        signal_number,
        f"stopped by {signal.Signals(signal_number).name}: {len(job_ids)} jobs left running ({ids}); run the same command "
        f"again to collect their records into {results_path}, or cancel them: scancel {ids}",
    )


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


def status_of_lost_job(state: str) -> Status:
    """The status of a job that ended without a record, from its state ("CANCELLED by 1234")."""
    words = state.split()
    return LOST_JOB_STATUSES.get(words[0] if words else "", Status.ERROR)


def _record_of(job, planned: PlannedRun, suite_name: str) -> Record:
    """The record the job returned, or one made from its state when it returned none."""
    try:
        return Record.from_json(job.result())
    except UncompletedJobError as error:  # the job died, or submitit failed around our function
        state = job.state
        return Record.from_json({
            "run_id": planned.spec.run_id, "suite": suite_name, "label": planned.label,
            "spec": planned.spec.to_json(), "setting": asdict(run_setting(planned.spec)),
            "status": status_of_lost_job(state),
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


class SlurmSession:
    """Every pending run as its own Slurm job; records collected as the jobs finish.
    `cluster` "local" runs the same jobs as local processes (submitit's local executor: the tests)."""

    def __init__(self, options: SlurmOptions, results_path: Path, settings: RunSettings, cluster: str = "slurm"):
        self.options, self.results_path, self.settings, self.cluster = options, results_path, settings, cluster
        self.folder = jobs_folder_of(results_path)
        self._in_flight: dict[str, tuple[PlannedRun, object]] = {}
        self._to_submit: list[PlannedRun] = []

    def check(self, runs: list[PlannedRun]):
        # CUDA is not checked here: the jobs find their GPUs on the nodes they land on.
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError("--launcher slurm submits with sbatch, which is not on this machine's PATH; "
                             "run from a Slurm login node")

    def plan(self, pending: list[PlannedRun]) -> str:
        submitted = read_jobs_in_flight(self.folder)
        self._in_flight = {run.spec.run_id: (run, JOB_CLASSES[self.cluster](self.folder, submitted[run.spec.run_id]))
                           for run in pending if run.spec.run_id in submitted}
        self._to_submit = [run for run in pending if run.spec.run_id not in submitted]
        return f"{len(self._in_flight)} in flight from an earlier harness, {len(self._to_submit)} to submit"

    def _submit(self, executor, planned: PlannedRun, suite_name: str):
        """The run's job, named for squeue; ValueError with sbatch's reason when it refuses one."""
        executor.update_parameters(name=f"{suite_name}-{planned.label}-seed{planned.spec.seed}")
        checkpoint_dir = str((checkpoints_of(self.results_path) / planned.spec.run_id).absolute())
        try:
            return executor.submit(run_as_job, planned, suite_name, self.settings.train_function,
                                   self.settings.progress, self.settings.timeout_s, checkpoint_dir)
        except FailedJobError as error:  # e.g. a partition or account the cluster does not know
            reason = (str(error).strip() or "no reason given").splitlines()[-1]
            raise ValueError(f"sbatch refused the job of {planned.description}: {reason}; "
                             "jobs submitted before it run on, and a re-run collects them") from None

    def run(self, suite_name: str, pending: list[PlannedRun], stops):
        """Submit the runs neither finished nor in flight, then yield each job's record as it
        finishes; a stop leaves the jobs running (SuiteStopped says which)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        jobs = {run_id: job.job_id for run_id, (_, job) in self._in_flight.items()}
        _write_jobs_in_flight(self.folder, jobs)  # forgets jobs of runs since finished or gone from the suite
        try:
            executor = _executor(self.folder, self.options, self.cluster)
            for planned in self._to_submit:
                stops.check()
                job = self._submit(executor, planned, suite_name)
                jobs[planned.spec.run_id] = job.job_id
                _write_jobs_in_flight(self.folder, jobs)
                self._in_flight[planned.spec.run_id] = (planned, job)
            if self._to_submit:
                where = f"partition {self.options.partition}" if self.options.partition else "the default partition"
                print(f"submitted {len(self._to_submit)} jobs to {where} ({self.options.gpus_per_job} GPUs, "
                      f"{self.options.time_limit_min} min each); logs in {self.folder}", flush=True)
            while self._in_flight:
                for run_id, (planned, job) in list(self._in_flight.items()):
                    if job.done():
                        yield planned, _record_of(job, planned, suite_name), f"job {job.job_id}"
                        # Forgotten once its record is appended: a harness killed in between
                        # finds the run finished, not in flight.
                        del self._in_flight[run_id], jobs[run_id]
                        _write_jobs_in_flight(self.folder, jobs)
                if self._in_flight:
                    with stops.waiting():
                        time.sleep(POLL_S)
        except RunStopped as stopped:
            raise jobs_left_running(stopped.signal_number, list(jobs.values()), self.results_path) from None
