"""The record schema: records of every layout read back as one shape; bad lines are named."""

import json
from pathlib import Path

import pytest

from core.spec import resolve_device
from launchers.packages import recorded_packages
from meters.environment import environment
from reports.columns import COLUMNS
from results.records import append_record, read_records
from results.schema import SCHEMA_VERSION, TASK_METRIC_NAMES, Record, RecordError
from tests.conftest import tiny_spec
from training.loop import train
from training.setting import run_setting

RECORDS_V1 = Path(__file__).parents[1] / "data" / "records_v1.jsonl"
"""Records written by the harness before the schema was typed (commit 0215bcf)."""


def test_records_written_before_the_schema_still_read():
    llama, glue, failed = read_records(RECORDS_V1)
    assert {llama.schema_version, glue.schema_version} == {SCHEMA_VERSION}
    assert llama.metrics.perplexity > 1 and llama.metrics.task_score is None
    assert llama.memory.tracker_at_peak_bytes["optimizer_state"] > 0
    assert glue.spec.data == {"task": "synthetic-classification"}
    assert glue.metrics.task_score == glue.metrics.task_metrics["accuracy"]
    assert (failed.status, failed.error, failed.metrics.final_loss) == ("error", "RuntimeError: boom", None)
    assert (llama.environment.cpu_count, llama.environment.load_average_1m) == (None, None)  # not recorded then


def test_an_old_checkpoint_option_is_renamed():
    old = json.loads(RECORDS_V1.read_text().splitlines()[1])
    old["spec"]["data"]["model"] = "/models/roberta-base"
    assert Record.from_json(old).spec.data["checkpoint"] == "/models/roberta-base"


def test_a_record_round_trips_through_a_results_file(tmp_path):
    record = read_records(RECORDS_V1)[0]
    append_record(tmp_path / "r.jsonl", record)
    assert read_records(tmp_path / "r.jsonl") == [record]


def test_lines_that_are_not_records_are_named_and_skipped(tmp_path, capsys):
    good = RECORDS_V1.read_text().splitlines()[0]
    unknown_field = json.dumps({**json.loads(good), "memroy": {}})
    newer = json.dumps({**json.loads(good), "schema_version": SCHEMA_VERSION + 1})
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join([good, "garbage", unknown_field, newer, good[:40]]) + "\n")
    assert len(read_records(path)) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[1] for line in err] == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    assert "memroy is not a field" in err[1] and "newer than this code" in err[2]


def test_an_unknown_status_is_refused():
    with pytest.raises(RecordError, match="status .done. is not known; accepted: ok, oom, nan, diverged, timeout, killed, error"):
        Record(run_id="x", suite="s", label="full", spec=tiny_spec(), status="done")


@pytest.mark.parametrize("workload, data", [("llama", {}), ("roberta_glue", {"task": "synthetic-regression"})])
def test_every_report_column_is_filled_by_a_real_run(workload, data, one_thread):
    """A meter or workload that renames a figure empties its column here, not silently in reports."""
    spec = tiny_spec(workload=workload, data=data, steps=3, timing_warmup_steps=1)
    metrics, memory = train(spec, progress=False)
    record = Record(run_id=spec.run_id, suite="s", label="full", spec=spec, status="ok", metrics=metrics,
                    memory=memory, environment=environment(resolve_device("cpu"), recorded_packages()),
                    setting=run_setting(spec))
    task_metrics = {f"metrics.task_metrics.{name}" for name in TASK_METRIC_NAMES}
    regression_metrics = {"metrics.task_metrics.pearson", "metrics.task_metrics.spearman"}  # synthetic-regression's
    lacking = {"llama": {"metrics.task_score", *task_metrics},
               "roberta_glue": {"metrics.perplexity", "metrics.final_loss_above_floor", *task_metrics - regression_metrics}}
    for column in COLUMNS:
        if column.cuda_only or column.key in lacking[workload]:
            assert column.cuda_only or column.value(record) is None
            continue
        assert column.value(record) is not None, f"{workload}: column {column.title} ({column.key}) is empty"
