"""Rows are keyed by label, and one label covering different settings never becomes one row."""

from dataclasses import replace

from reports.render import render_report
from results.records import append_record
from tests.record_fixtures import make_record, markdown_rows


def with_options(record, **options):
    spec = replace(record.spec, method_options=options)
    return replace(record, spec=spec, run_id=spec.run_id)


def test_one_label_with_different_options_keeps_a_row_per_setting(tmp_path):
    results = tmp_path / "demo.jsonl"
    append_record(results, make_record("a", "full"))
    append_record(results, with_options(make_record("b", "lora", final_loss=3.0), rank=8))
    append_record(results, with_options(make_record("c", "lora", final_loss=5.0), rank=16))
    append_record(results, with_options(make_record("d", "lora", final_loss=7.0, seed=1), rank=16))
    text = render_report(results, tmp_path / "out").read_text()
    rows = markdown_rows(text, "workload", "final loss")
    assert [(row["method"], row["final loss"]) for row in rows] == [
        ("full", "2"), ("lora (rank=8)", "3"), ("lora (rank=16)", "6 ± 1.4")
    ]
    settings = markdown_rows(text, "workload", "seeds")
    assert [row["seeds"] for row in settings] == ["1", "1", "2"]


def test_deltas_are_against_the_baseline_label_of_the_same_workload(tmp_path):
    results = tmp_path / "demo.jsonl"
    append_record(results, make_record("a", "full", final_loss=2.0))
    append_record(results, make_record("b", "galore", final_loss=3.0))
    rows = markdown_rows(render_report(results, tmp_path / "out").read_text(), "workload", "final loss")
    assert [row["Δ final loss vs full"] for row in rows] == ["baseline", "+50.0%"]
    rows = markdown_rows(render_report(results, tmp_path / "b", baseline="galore").read_text(), "workload", "final loss")
    assert [row["Δ final loss vs galore"] for row in rows] == ["-33.3%", "baseline"]


def test_estimate_lines_keep_one_label_per_setting_across_sizes():
    from reports.labels import row_key, row_labels

    records = [with_options(make_record("a", "lora"), rank=128), with_options(make_record("b", "lora")),
               replace(make_record("c", "lora"), spec=replace(make_record("c", "lora").spec, size="60m"))]
    labels = row_labels(records, across_sizes=True)
    assert [labels[row_key(r)] for r in records] == ["lora (rank=128)", "lora (rank=default)", "lora (rank=default)"]
