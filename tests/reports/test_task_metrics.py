"""Each GLUE task's own metrics stand beside its score, in report.md and summary.csv alike."""

import pandas as pd

from reports.render import render_report
from results.records import append_record
from tests.record_fixtures import make_record, markdown_rows


def glue_record(run_id: str, task: str, seed: int = 0, **task_metrics):
    return make_record(run_id, "full", seed=seed, workload="roberta_glue", data={"task": task},
                       task_score=sum(task_metrics.values()) / len(task_metrics), task_metrics=task_metrics)


def test_mrpc_shows_accuracy_and_f1_and_sts_b_pearson_and_spearman(tmp_path):
    results = tmp_path / "glue.jsonl"
    append_record(results, glue_record("a", "mrpc", accuracy=0.75, f1=0.85))
    append_record(results, glue_record("b", "mrpc", seed=1, accuracy=0.25, f1=0.65))
    append_record(results, glue_record("c", "stsb", pearson=0.5, spearman=0.25))
    out = tmp_path / "out"

    mrpc, stsb = markdown_rows(render_report(results, out).read_text(), "workload", "task score")
    assert (mrpc["workload"], mrpc["task score"], mrpc["accuracy"], mrpc["F1"]) == (
        "roberta_glue-tiny mrpc", "0.625 ± 0.25", "0.5 ± 0.35", "0.75 ± 0.14")
    assert (mrpc["Pearson"], mrpc["Spearman"]) == ("–", "–")
    assert (stsb["task score"], stsb["Pearson"], stsb["Spearman"], stsb["accuracy"]) == ("0.375", "0.5", "0.25", "–")
    assert "Matthews corr." not in mrpc  # no row has it

    summary = pd.read_csv(out / "summary.csv").set_index("workload")
    assert summary.loc["roberta_glue-tiny mrpc", "metrics.task_metrics.accuracy_mean"] == 0.5
    assert summary.loc["roberta_glue-tiny mrpc", "metrics.task_metrics.f1_mean"] == 0.75
    assert summary.loc["roberta_glue-tiny stsb", "metrics.task_metrics.pearson_mean"] == 0.5
    assert summary.loc["roberta_glue-tiny stsb", "metrics.task_metrics.spearman_mean"] == 0.25
    assert pd.isna(summary.loc["roberta_glue-tiny stsb", "metrics.task_metrics.f1_mean"])
