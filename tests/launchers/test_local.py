"""The local launcher through the suite runner: one record per run, resume, every way a run can
end recorded, the suite going on; results files written by one harness at a time; no orphan
workers."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from core.statuses import FINISHED
from harness import main
from launchers.packages import recorded_packages
from results.records import read_records, results_lock
from suites.load import load_suite
from tests.conftest import run_locally
from training.loop import train

SUITE = """
    name = "runner"
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
    name = "adam8bit"
    [[methods]]
    name = "lora"
"""


def fails_one_way_each(spec, progress, checkpoint_dir):
    """Stands in for train(): adam8bit raises, lora diverges, low_rank is killed from outside;
    full trains for real."""
    if spec.method == "adam8bit":
        raise RuntimeError("deliberate failure")
    if spec.method == "low_rank":
        os.kill(os.getpid(), signal.SIGKILL)
    metrics, memory = train(spec, progress=progress)
    if spec.method == "lora":
        metrics.loss_curve = [7.0] * 5 + [9.5] * 5
    return metrics, memory


@pytest.mark.slow
def test_records_every_run_and_resume_skips_finished(write_suite, tmp_path):
    suite = load_suite(write_suite(SUITE))
    results = tmp_path / "runner.jsonl"
    records = run_locally(suite, results, progress=False)
    assert [r.status for r in records] == ["ok", "ok", "ok"]
    assert read_records(results) == records
    for record in records:
        assert record.metrics.timed_steps == 2
        assert len(record.metrics.loss_curve) == 3
        assert record.environment.packages["torch"].startswith("2.13")
        # Every package a registered method, workload or launcher imports, with its version.
        assert set(record.environment.packages) == set(recorded_packages())
        assert {"peft", "bitsandbytes", "apollo-torch", "adam-mini", "fira", "torchao", "galore-torch", "datasets",
                "submitit"} <= {name for name, version in record.environment.packages.items() if version}
        assert record.memory.trainable_weight_bytes > 0
    assert run_locally(suite, results, progress=False) == []
    assert len(read_records(results)) == 3


def sleeps(spec, progress, checkpoint_dir):
    """Stands in for train(): never finishes."""
    time.sleep(600)


def test_every_way_a_run_ends_is_recorded_and_the_suite_goes_on(write_suite, tmp_path):
    suite = load_suite(write_suite(SUITE + '\n[[methods]]\nname = "low_rank"\n'))
    results = tmp_path / "runner.jsonl"
    records = run_locally(suite, results, train_function=fails_one_way_each, progress=False)
    assert [(r.label, r.status) for r in records] == [
        ("full", "ok"), ("adam8bit", "error"), ("lora", "diverged"), ("low_rank", "killed")
    ]
    error, diverged, killed = records[1:]
    assert error.error == "RuntimeError: deliberate failure" and "deliberate failure" in error.traceback
    assert diverged.error == "mean loss of the last 5 steps 9.5000 is above 1.25 x that of the first 5, 7.0000"
    assert diverged.metrics.final_loss is not None  # a diverged run keeps its figures
    assert killed.error == "worker killed by SIGKILL from outside the harness"
    # Killed and error runs are retried on resume.
    retried = run_locally(suite, results, progress=False, train_function=fails_one_way_each)
    assert [(r.label, r.status) for r in retried] == [("adam8bit", "error"), ("low_rank", "killed")]


@pytest.mark.slow
def test_a_run_past_the_timeout_is_stopped_and_retried_only_when_asked(write_suite, tmp_path):
    suite = load_suite(write_suite(SUITE.split("[[methods]]")[0] + '[[methods]]\nname = "full"\n'))
    results = tmp_path / "runner.jsonl"
    [record] = run_locally(suite, results, train_function=sleeps, progress=False, timeout_s=2)
    assert (record.status, record.error) == ("timeout", "ran past --run-timeout 2 s and was stopped")
    assert run_locally(suite, results, train_function=sleeps, progress=False, timeout_s=2) == []
    [again] = run_locally(suite, results, train_function=sleeps, progress=False, timeout_s=2, retry_timeouts=True)
    assert again.status == "timeout"


def test_a_second_harness_on_the_same_results_is_refused(write_suite, tmp_path, capsys):
    results = tmp_path / "runner.jsonl"
    with results_lock(results):
        assert main(["run", str(write_suite(SUITE)), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {results} is being written by harness pid {os.getpid()} on ")
    assert not results.exists()


def test_run_exits_1_when_a_run_did_not_finish_ok(write_suite, tmp_path):
    # A data directory that exists (so preflight lets it through) but holds no text.
    (tmp_path / "empty").mkdir()
    text = SUITE.replace('size = "tiny"', f'size = "tiny"\n    data = {{ corpus = "local", path = "{tmp_path / "empty"}" }}')
    text = text.split("[[methods]]")[0] + '[[methods]]\nname = "full"\n'
    assert main(["run", str(write_suite(text)), "--results", str(tmp_path / "r.jsonl"), "--no-progress"]) == 1
    [record] = read_records(tmp_path / "r.jsonl")
    assert record.status == "error" and "holds no .txt or .jsonl(.gz) files" in record.error


def start_long_suite(write_suite, tmp_path):
    """A harness running a run long enough to be stopped, returned once its worker exists."""
    text = SUITE.replace("steps = 3", "steps = 100000").split("[[methods]]")[0] + '[[methods]]\nname = "full"\n'
    results = tmp_path / "long.jsonl"
    harness = subprocess.Popen([sys.executable, "harness.py", "run", str(write_suite(text)), "--results", str(results),
                                "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240  # imports and the fork server's preload are slow on a loaded machine
    while not worker_of(harness.pid):
        assert time.time() < deadline and harness.poll() is None
        time.sleep(0.5)
    return harness, results


def worker_of(harness_pid: int) -> list[psutil.Process]:
    """The run's worker: a child of the fork server, itself a child of the harness."""
    return [grandchild for child in psutil.Process(harness_pid).children() for grandchild in child.children()]


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def gone(processes: list[psutil.Process], within_s: float = 120) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=within_s)
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_harness_records_the_run_killed_and_leaves_no_process(write_suite, tmp_path, stop):
    harness, results = start_long_suite(write_suite, tmp_path)
    children = descendants(harness.pid)
    assert children
    harness.send_signal(stop)
    assert harness.wait(timeout=120) == 128 + stop
    assert gone(children)
    [record] = read_records(results)
    assert (record.status, record.error) == ("killed", f"the harness was stopped by {stop.name} during this run")


@pytest.mark.slow
def test_a_killed_harness_leaves_no_worker_training(write_suite, tmp_path):
    harness, results = start_long_suite(write_suite, tmp_path)
    workers, everything = worker_of(harness.pid), descendants(harness.pid)
    harness.kill()
    harness.wait(timeout=10)
    assert gone(workers, within_s=30)  # the worker dies with the fork server, which exits with the harness
    assert gone(everything)
    assert read_records(results) == []


@pytest.mark.slow
def test_a_harness_killed_at_random_moments_loses_and_repeats_nothing(write_suite, tmp_path):
    """kill -9 at random moments, three times, then a full run: one finished record per run, no torn line."""
    import random

    path = write_suite(SUITE + '\n[[methods]]\nname = "galore"\n[[methods]]\nname = "low_rank"\n')
    results = tmp_path / "runner.jsonl"
    command = [sys.executable, "harness.py", "run", str(path), "--results", str(results), "--no-progress"]
    chance = random.Random(1234)
    for _ in range(3):
        harness = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(chance.uniform(2, 25))
        harness.kill()
        harness.wait()
    assert subprocess.run(command, capture_output=True, timeout=600).returncode == 0
    lines = results.read_text().splitlines()
    records = read_records(results)
    assert len(records) == len(lines)  # every line a whole record
    finished = [r.run_id for r in records if r.status in FINISHED]
    assert sorted(finished) == sorted(run.spec.run_id for run in load_suite(path).runs)
