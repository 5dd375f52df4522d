"""The suite runner: one record per run, resume, failures recorded without stopping the suite."""

import os
import signal

from results.records import read_records
from runner import run_suite
from suites.load import load_suite
from train import train

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

def raise_for_adam8bit(spec, progress):
    """Stands in for train(): fails one method, trains the others for real."""
    if spec.method == "adam8bit":
        raise RuntimeError("deliberate failure")
    return train(spec, progress=progress)


def killed_for_lora(spec, progress):
    """Stands in for train(): the lora worker dies the way the OOM killer ends a process."""
    if spec.method == "lora":
        os.kill(os.getpid(), signal.SIGKILL)
    return train(spec, progress=progress)


def test_records_every_run_and_resume_skips_finished(write_suite, tmp_path):
    suite = load_suite(write_suite(SUITE))
    results = tmp_path / "runner.jsonl"
    records = run_suite(suite, results, progress=False)
    assert [r.status for r in records] == ["ok", "ok", "ok"]
    assert read_records(results) == records
    for record in records:
        assert record.metrics.timed_steps == 2
        assert len(record.metrics.loss_curve) == 3
        assert record.environment.packages["torch"].startswith("2.13")
        assert record.memory.trainable_weight_bytes > 0
    assert run_suite(suite, results, progress=False) == []
    assert len(read_records(results)) == 3


def test_a_failing_run_is_recorded_and_the_suite_goes_on(write_suite, tmp_path):
    suite = load_suite(write_suite(SUITE))
    results = tmp_path / "runner.jsonl"
    records = run_suite(suite, results, train_function=raise_for_adam8bit, progress=False)
    assert [r.status for r in records] == ["ok", "error", "ok"]
    assert records[1].error == "RuntimeError: deliberate failure"
    assert "deliberate failure" in records[1].traceback
    # Errors are retried on resume; finished runs are not.
    retried = run_suite(suite, results, progress=False)
    assert [(r.label, r.status) for r in retried] == [("adam8bit", "ok")]


def test_a_killed_worker_is_recorded_as_oom(write_suite, tmp_path):
    only_lora = SUITE.split("[[methods]]")[0] + '[[methods]]\nname = "lora"\n'
    suite = load_suite(write_suite(only_lora))
    records = run_suite(suite, tmp_path / "runner.jsonl", train_function=killed_for_lora, progress=False)
    assert [r.status for r in records] == ["oom"]
    assert "SIGKILL" in records[0].error
