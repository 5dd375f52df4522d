"""The local launcher through the suite runner: one record per run, resume, every way a run can
end recorded, the suite going on; results files written by one harness at a time; no orphan
workers."""

import errno
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
from launchers.suite_runner import checkpoints_of
from results.records import read_records, results_lock
from suites.load import load_suite
from tests.conftest import run_locally
from tests.process_events import HANG_GUARD_S, OutputLines, all_ended, wait_until
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


@pytest.mark.slow  # starts worker processes
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
    # The timeout counts from the worker's fork, and the stand-in never finishes: any timeout
    # ends the run as timeout, however loaded the machine.
    [record] = run_locally(suite, results, train_function=sleeps, progress=False, timeout_s=0.5)
    assert (record.status, record.error) == ("timeout", "ran past --run-timeout 0.5 s and was stopped")
    assert run_locally(suite, results, train_function=sleeps, progress=False, timeout_s=0.5) == []
    [again] = run_locally(suite, results, train_function=sleeps, progress=False, timeout_s=0.5, retry_timeouts=True)
    assert again.status == "timeout"


def test_a_second_harness_on_the_same_results_is_refused(write_suite, tmp_path, capsys):
    results = tmp_path / "runner.jsonl"
    with results_lock(results):
        assert main(["run", str(write_suite(SUITE)), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {results} is being written by harness pid {os.getpid()} on ")
    assert not results.exists()


@pytest.mark.slow  # starts worker processes
def test_run_exits_1_when_a_run_did_not_finish_ok(write_suite, tmp_path):
    # A learning rate that passes every check before the run and blows the loss up in its steps.
    text = SUITE.replace("steps = 3", "steps = 3\n    lr = 1e6").split("[[methods]]")[0] + '[[methods]]\nname = "full"\n'
    text = text.replace('name = "llama"', 'name = "roberta_glue"').replace(
        'size = "tiny"', 'size = "tiny"\n    data = { task = "synthetic-classification" }')
    assert main(["run", str(write_suite(text)), "--results", str(tmp_path / "r.jsonl"), "--no-progress"]) == 1
    [record] = read_records(tmp_path / "r.jsonl")
    assert record.status == "nan" and record.error.startswith("NonFiniteLoss: loss is nan at step")


def start_long_suite(write_suite, tmp_path):
    """A harness running a run long enough to be stopped, returned once its worker trains: the
    worker's progress bar on the harness's stderr says so (a thread reads the rest)."""
    text = SUITE.replace("steps = 3", "steps = 100000").split("[[methods]]")[0] + '[[methods]]\nname = "full"\n'
    results = tmp_path / "long.jsonl"
    harness = subprocess.Popen([sys.executable, "harness.py", "run", str(write_suite(text)), "--results", str(results)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    OutputLines(harness.stderr).wait_for("full llama-tiny: ")
    return harness, results


def worker_of(harness_pid: int) -> list[psutil.Process]:
    """The run's worker: a child of the fork server, itself a child of the harness."""
    return [grandchild for child in psutil.Process(harness_pid).children() for grandchild in child.children()]


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_stopping_the_harness_records_the_run_killed_and_leaves_no_process(write_suite, tmp_path, stop):
    harness, results = start_long_suite(write_suite, tmp_path)
    children = descendants(harness.pid)
    assert children
    harness.send_signal(stop)
    assert harness.wait(timeout=HANG_GUARD_S) == 128 + stop
    assert all_ended(children)
    [record] = read_records(results)
    assert (record.status, record.error) == ("killed", f"the harness was stopped by {stop.name} during this run")


@pytest.mark.slow
def test_a_killed_harness_leaves_no_worker_training(write_suite, tmp_path):
    harness, results = start_long_suite(write_suite, tmp_path)
    workers, everything = worker_of(harness.pid), descendants(harness.pid)
    assert workers
    # The worker watches the harness itself, not only the fork server, which takes seconds to
    # shut down with torch imported: with the fork server held stopped, the worker still ends.
    [server] = fork_server_of(harness.pid)
    server.suspend()
    harness.kill()
    harness.wait(timeout=HANG_GUARD_S)
    assert all_ended(workers)
    server.resume()
    assert all_ended(everything)
    assert read_records(results) == []


def fork_server_of(harness_pid: int) -> list[psutil.Process]:
    return [child for child in psutil.Process(harness_pid).children() if "forkserver" in " ".join(child.cmdline())]


HARNESS_MARK = "TEST_LOCAL_HARNESS"
"""An environment variable a harness's fork server and workers inherit, set to a test's own value."""


def forked_by_a_fork_server(mark: str) -> set[int]:
    """Live processes running a fork server's command line, fork servers and the workers they
    fork, whose environment holds `mark` (HARNESS_MARK): those of one harness, not those other
    tests or other test sessions on this machine start meanwhile."""
    return {p.info["pid"] for p in psutil.process_iter(["pid", "cmdline", "status", "environ"])
            if "multiprocessing.forkserver" in " ".join(p.info["cmdline"] or []) and p.info["status"] != "zombie"
            and (p.info["environ"] or {}).get(HARNESS_MARK) == mark}


def asking_the_fork_server_for_the_worker(harness_pid: int) -> bool:
    """The fork server runs and the harness has closed its listening socket, which it does once it
    has noted the server's pid (multiprocessing.forkserver.ensure_running): from here on a stop is
    the harness's to handle by ending the server."""
    listening = [c for c in psutil.Process(harness_pid).net_connections(kind="unix") if "listener-" in c.laddr]
    return bool(fork_server_of(harness_pid)) and not listening


@pytest.mark.slow
def test_a_stop_while_the_first_worker_is_starting_leaves_no_worker_to_start_later(write_suite, tmp_path):
    """The fork server imports torch and the rest before it forks the first worker: a SIGTERM
    then must not leave that worker to be forked after the harness has gone."""
    text = SUITE.replace("steps = 3", "steps = 100000").split("[[methods]]")[0] + '[[methods]]\nname = "full"\n'
    results = tmp_path / "long.jsonl"
    harness = subprocess.Popen([sys.executable, "harness.py", "run", str(write_suite(text)), "--results", str(results),
                                "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, HARNESS_MARK: str(tmp_path)})
    OutputLines(harness.stdout).wait_for(") started")  # the harness is about to start the fork server
    wait_until(lambda: harness.poll() is not None or asking_the_fork_server_for_the_worker(harness.pid),
               "the harness asks the fork server for the worker")
    assert harness.poll() is None
    [server] = fork_server_of(harness.pid)
    # Held stopped, the fork server cannot finish its imports and fork the worker, however long
    # the test takes to get here: the stop below comes while the worker is being started. Only
    # the harness's SIGKILL can end it, and once it has ended it can fork nothing.
    server.suspend()
    assert not server.children()
    harness.send_signal(signal.SIGTERM)
    assert harness.wait(timeout=HANG_GUARD_S) == 128 + signal.SIGTERM
    assert all_ended([server])
    assert forked_by_a_fork_server(str(tmp_path)) == set()
    [record] = read_records(results)
    assert (record.status, record.error) == ("killed", "the harness was stopped by SIGTERM during this run")


@pytest.mark.slow
def test_a_harness_killed_at_random_moments_loses_and_repeats_nothing(write_suite, tmp_path):
    """kill -9 at random moments, three times, then a full run: one finished record per run, no torn line."""
    import random

    path = write_suite(SUITE + '\n[[methods]]\nname = "galore"\n[[methods]]\nname = "low_rank"\n')
    results = tmp_path / "runner.jsonl"
    command = [sys.executable, "harness.py", "run", str(path), "--results", str(results), "--no-progress"]
    runs = load_suite(path).runs
    chance = random.Random(1234)
    for _ in range(3):
        # A random moment counted in the harness's own lines (its first, then a start and an end
        # per run), not in seconds, which a loaded machine stretches: up to 2 s after a random one
        # of them, or into its start-up when none is waited for.
        harness = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        printed = OutputLines(harness.stdout)
        for _ in range(chance.randint(0, 1 + 2 * len(runs))):
            if printed.next_line() is None:  # the harness finished its runs first
                break
        time.sleep(chance.uniform(0, 2))
        harness.kill()
        harness.wait()
    assert subprocess.run(command, capture_output=True, timeout=HANG_GUARD_S).returncode == 0
    lines = results.read_text().splitlines()
    records = read_records(results)
    assert len(records) == len(lines)  # every line a whole record
    finished = [r.run_id for r in records if r.status in FINISHED]
    assert sorted(finished) == sorted(run.spec.run_id for run in runs)


@pytest.mark.slow  # starts worker processes
def test_a_record_the_disk_refuses_stops_the_suite_keeping_the_runs_checkpoints(write_suite, tmp_path, monkeypatch,
                                                                                  capsys):
    from results import records

    text = SUITE.replace("steps = 3", "steps = 3\n    checkpoint_every = 1").split("[[methods]]")[0]
    path = write_suite(text + '[[methods]]\nname = "full"\n[[methods]]\nname = "lora"\n')
    results = tmp_path / "r.jsonl"

    def disk_full(descriptor, line):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(records, "_write_whole", disk_full)
    assert main(["run", str(path), "--results", str(results), "--no-progress"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == (f"error: {results}: No space left on device: the ok record of full llama-tiny seed 0 was not "
                    "written; the run runs again on resume, its checkpoints are kept")
    [full, _] = load_suite(path).runs
    assert (checkpoints_of(results) / full.spec.run_id / "checkpoint.pt").exists()
    assert results.read_text() == ""
    monkeypatch.undo()
    assert main(["run", str(path), "--results", str(results), "--no-progress"]) == 0
    assert [r.label for r in read_records(results)] == ["full", "lora"]  # full trained again, lora for the first time
    assert not (checkpoints_of(results) / full.spec.run_id).exists()
