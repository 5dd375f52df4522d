"""A suite on a cluster: one submitit job per run (submitit's local executor stands in for
Slurm: the same submission, pickles, job ids and results), each job's record appended here as
it finishes, exactly as a local run's; resume collects the jobs an earlier harness left in
flight and submits only the rest; Slurm's ways of ending a job become records."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from functools import partial

import psutil
import pytest

from harness import main
from launchers.base import RunSettings, SuiteStopped
from launchers.slurm.child import TIME_LIMIT_SIGNAL
from launchers.slurm.options import SlurmOptions
from launchers.slurm.parent import (
    SlurmSession,
    jobs_folder_of,
    jobs_left_running,
    read_jobs_in_flight,
    status_of_lost_job,
)
from launchers.suite_runner import run_suite
from results.records import read_records
from suites.load import load_suite
from tests.conftest import run_locally
from tests.process_events import HANG_GUARD_S, OutputLines, ended
from training.loop import train

pytestmark = pytest.mark.slow  # each job starts its own interpreter

SUITE = """
    name = "cluster"
    [defaults]
    steps = 3
    batch_size = 2
    seq_len = 16
    eval_batches = 1
    timing_warmup_steps = 1
    device = "cpu"
    [[workloads]]
    name = "llama"
    size = "tiny"
    [[methods]]
    name = "full"
    [[methods]]
    name = "lora"
    [slurm]
    gpus_per_job = 0
    time_limit_min = 60
"""
"""submitit's local executor enforces the time limit (its warning shortly before): an hour, a hang
guard, so that no job on a loaded machine reaches it unless a test sends the warning itself."""


def on_the_local_cluster(suite, results, **settings):
    """The suite's runs as jobs of submitit's local executor, through the suite runner."""
    settings = RunSettings(progress=False, **settings)
    session = SlurmSession(suite.launcher_options["slurm"], results, settings, cluster="local")
    return run_suite(session, suite, results, settings)


def submitted_jobs(results) -> int:
    """Jobs ever submitted for a results file (submitit keeps one pickle per job)."""
    return len(list(jobs_folder_of(results).glob("*_submitted.pkl")))


def filled_fields(record) -> dict:
    """The names of the record's figures that hold a value, part by part."""
    parts = ("metrics", "memory", "environment")
    top = {name for name, value in asdict(record).items() if value is not None and name not in parts}
    return {"record": top, **{part: {name for name, value in asdict(getattr(record, part)).items() if value is not None}
                              for part in parts}}


def test_a_job_records_what_a_local_run_records_and_a_rerun_submits_only_the_rest(write_suite, tmp_path):
    suite = load_suite(write_suite(SUITE))
    results = tmp_path / "cluster.jsonl"
    [local] = run_locally(replace(suite, runs=[run for run in suite.runs if run.label == "full"]), results, progress=False)
    [job] = on_the_local_cluster(suite, results)
    assert submitted_jobs(results) == 1  # full was finished already: only lora went out
    assert (job.label, job.status, job.suite) == ("lora", "ok", "cluster")
    assert read_records(results) == [local, job]
    assert filled_fields(job) == filled_fields(local)
    assert replace(job.environment, load_average_1m=None) == replace(local.environment, load_average_1m=None)
    assert job.metrics.timed_steps == 2 and len(job.metrics.loss_curve) == 3
    assert job.memory.trainable_weight_bytes > 0 and job.memory.frozen_weight_bytes > 0
    assert read_jobs_in_flight(jobs_folder_of(results)) == {}
    assert on_the_local_cluster(suite, results) == []
    assert submitted_jobs(results) == 1 and len(read_records(results)) == 2


def stops_the_harness_then_trains(harness_pid, spec, progress, checkpoint_dir):
    """Stands in for train(): Ctrl-C reaches the harness while the run goes on."""
    os.kill(harness_pid, signal.SIGINT)
    return train(spec, progress=progress)


def test_a_rerun_collects_the_job_a_stopped_harness_left_running_without_submitting_it_again(
        write_suite, tmp_path, capsys):
    suite = load_suite(write_suite(SUITE.replace('[[methods]]\n    name = "lora"\n', "")))
    results = tmp_path / "cluster.jsonl"
    with pytest.raises(SuiteStopped) as stopped:
        on_the_local_cluster(suite, results, train_function=partial(stops_the_harness_then_trains, os.getpid()))
    [job_id] = read_jobs_in_flight(jobs_folder_of(results)).values()
    assert stopped.value.signal_number == signal.SIGINT
    assert f"1 jobs left running ({job_id}); run the same command again" in str(stopped.value)
    assert read_records(results) == []
    assert ended(int(job_id))  # the job trains on without its harness (a local job's id is its pid)
    assert (jobs_folder_of(results) / f"{job_id}_0_result.pkl").exists()
    capsys.readouterr()
    [record] = on_the_local_cluster(suite, results)
    assert "1 in flight from an earlier harness, 0 to submit" in capsys.readouterr().out
    assert record.status == "ok" and submitted_jobs(results) == 1
    assert read_records(results) == [record] and read_jobs_in_flight(jobs_folder_of(results)) == {}


def stopped_by_the_cluster(spec, progress, checkpoint_dir):
    """Stands in for train(): Slurm warns lora's job of its time limit and cancels adam8bit's."""
    job = psutil.Process(os.getppid()).parent()  # the worker's fork server was started by the job
    job.send_signal(TIME_LIMIT_SIGNAL if spec.method == "lora" else signal.SIGTERM)
    time.sleep(600)


def test_a_job_the_cluster_stops_is_recorded_and_the_suite_goes_on(write_suite, tmp_path):
    suite = load_suite(write_suite(SUITE.replace('name = "full"', 'name = "adam8bit"')))
    results = tmp_path / "cluster.jsonl"
    records = on_the_local_cluster(suite, results, train_function=stopped_by_the_cluster)
    by_label = {record.label: (record.status, record.error) for record in records}
    assert by_label == {
        "lora": ("timeout", "reached the job's time limit (--time-limit, launcher.slurm.time_limit_min) and was "
                 "stopped"),
        "adam8bit": ("killed", "the job was stopped by SIGTERM (scancel or preemption) during this run"),
    }
    assert sorted(record.label for record in read_records(results)) == ["adam8bit", "lora"]


FAKE_SLURM = {
    # Runs the job script at once, detached from the harness, as if on a node.
    "sbatch": """#!/bin/bash
id=$(( $(date +%s%N) / 1000 % 1000000 ))
SLURM_JOB_ID=$id SLURM_NTASKS=1 SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NODEID=0 SLURM_JOB_NUM_NODES=1 \\
    setsid bash "$1" > /dev/null 2>&1 &
echo "Submitted batch job $id"
""",
    "srun": """#!/bin/bash
while [[ "$1" == --* ]]; do if [[ "$1" == --unbuffered ]]; then shift; else shift 2; fi; done
exec "$@"
""",
    "sacct": """#!/bin/bash
echo "JobID|State|NodeList"
""",
}


def test_a_harness_killed_after_submitting_loses_nothing_and_submits_nothing_twice(write_suite, tmp_path):
    """The command line with submitit's Slurm executor itself, against stand-ins for sbatch, srun and sacct."""
    for name, script in FAKE_SLURM.items():
        (tmp_path / "bin" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "bin" / name).write_text(script)
        (tmp_path / "bin" / name).chmod(0o755)
    environment = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    suite = write_suite(SUITE.replace('[[methods]]\n    name = "lora"\n', ""))
    results = tmp_path / "cluster.jsonl"
    command = [sys.executable, "harness.py", "run", str(suite), "--results", str(results), "--launcher", "slurm",
               "--no-progress"]
    harness = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    OutputLines(harness.stdout).wait_for("submitted 1 jobs")  # printed once the file of jobs in flight holds them
    assert json.loads((jobs_folder_of(results) / "jobs.json").read_text())
    harness.kill()
    harness.wait()
    again = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert again.returncode == 0, again.stderr
    assert "1 in flight from an earlier harness, 0 to submit" in again.stdout
    [record] = read_records(results)
    assert record.status == "ok" and submitted_jobs(results) == 1
    assert "#SBATCH --time=60" in next(jobs_folder_of(results).glob("*_submission.sh")).read_text()


@pytest.mark.parametrize("state, status", [
    ("TIMEOUT", "timeout"), ("OUT_OF_MEMORY", "oom"), ("CANCELLED by 1234", "killed"), ("NODE_FAIL", "killed"),
    ("PREEMPTED", "killed"), ("INTERRUPTED", "killed"), ("FAILED", "error"), ("COMPLETED", "error"), ("", "error"),
])
def test_a_job_that_ended_without_a_record_is_recorded_from_its_state(state, status):
    assert status_of_lost_job(state) == status


BAD = {
    "a wrong type": ('[slurm]\ngpus_per_job = "two"\n', [], "suite.toml: slurm.gpus_per_job = 'two' must be an integer"),
    "an unknown key": ('[slurm]\npartiton = "gpu"\n', [],
                       "suite.toml: slurm.partiton is not a known option; accepted: partition, gpus_per_job, "
                       "time_limit_min, account"),
    "no time": ("[slurm]\ntime_limit_min = 0\n", [], "suite.toml: slurm.time_limit_min = 0 must be at least 1 (minutes)"),
    "not a table": ("slurm = 3\n", [], "suite.toml: slurm = 3 must be a table"),
    "the launcher's own table": ("[launcher.slurm]\ntime_limit_min = 0\n", [],
                                 "suite.toml: launcher.slurm.time_limit_min = 0 must be at least 1 (minutes)"),
    "both tables": ("[launcher.slurm]\naccount = 'a'\n[slurm]\naccount = 'b'\n", [],
                    "suite.toml: [slurm] and [launcher.slurm] both set slurm's options; keep one"),
    "no such launcher": ("[launcher.ray]\naddress = 'auto'\n", [],
                         "suite.toml: launcher.ray is not a registered launcher; accepted: local, slurm"),
    "a flag without the launcher": ("", ["--partition", "gpu"], "--partition applies only with --launcher slurm"),
    "no sbatch here": ("", ["--launcher", "slurm"], "--launcher slurm submits with sbatch, which is not on this "
                                                    "machine's PATH; run from a Slurm login node"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_slurm_options_stop_the_suite_with_one_line(case, write_suite, tmp_path, capsys, monkeypatch):
    table, flags, message = BAD[case]
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, whatever this machine has
    base = SUITE.split("[slurm]")[0]
    text = table + base if table.startswith("slurm =") else base + table
    assert main(["run", str(write_suite(text)), "--results", str(tmp_path / "r.jsonl"), *flags]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and line.endswith(message)
    assert not (tmp_path / "r.jsonl").exists()


def test_a_flag_out_of_range_is_refused_by_the_parser(write_suite, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["run", str(write_suite(SUITE)), "--launcher", "slurm", "--time-limit", "0"])
    assert exit.value.code == 2
    assert "argument --time-limit: 0 must be at least 1" in capsys.readouterr().err


def no_sbatch_needed(monkeypatch):
    monkeypatch.setattr(SlurmSession, "check", lambda self, runs: None)


@pytest.mark.parametrize("table", ["[slurm]", "[launcher.slurm]"])
def test_command_line_flags_win_over_the_suite_table(table, write_suite, tmp_path, monkeypatch):
    given = {}

    def submits_nothing(self, suite_name, pending, stops):
        given["options"] = self.options
        yield from ()

    no_sbatch_needed(monkeypatch)
    monkeypatch.setattr(SlurmSession, "run", submits_nothing)
    path = write_suite(SUITE.replace("[slurm]", f'{table}\npartition = "a100"\naccount = "lab"'))
    assert main(["run", str(path), "--results", str(tmp_path / "r.jsonl"), "--launcher", "slurm",
                 "--time-limit", "240", "--account", "other"]) == 0
    assert given["options"] == SlurmOptions(partition="a100", gpus_per_job=0, time_limit_min=240, account="other")


def test_a_stopped_harness_says_how_to_collect_or_cancel_the_jobs_left_running(write_suite, tmp_path, monkeypatch,
                                                                                capsys):
    def stopped_while_waiting(self, suite_name, pending, stops):
        raise jobs_left_running(signal.SIGTERM, ["101", "102"], self.results_path)
        yield

    no_sbatch_needed(monkeypatch)
    monkeypatch.setattr(SlurmSession, "run", stopped_while_waiting)
    results = tmp_path / "r.jsonl"
    assert main(["run", str(write_suite(SUITE)), "--results", str(results), "--launcher", "slurm"]) == 128 + 15
    assert capsys.readouterr().err == (
        f"stopped by SIGTERM: 2 jobs left running (101 102); run the same command again to collect their records "
        f"into {results}, or cancel them: scancel 101 102\n")
