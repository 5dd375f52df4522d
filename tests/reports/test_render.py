"""Reports render from records alone."""

import pytest

from harness import main
from reports.render import render_report
from results.records import append_record
from tests.record_fixtures import make_record, markdown_rows


def test_report_has_one_row_per_method_and_lists_failures(tmp_path):
    results = tmp_path / "demo.jsonl"
    append_record(results, make_record("a", "full", final_loss=2.0, seed=0))
    append_record(results, make_record("b", "full", final_loss=4.0, seed=1))
    append_record(results, make_record("c", "lora", status="error", error="RuntimeError: boom"))
    append_record(results, make_record("d", "lora", status="oom", error="killed"))
    append_record(results, make_record("d", "lora", final_loss=3.0))  # a retry replaces the earlier record

    text = render_report(results, tmp_path / "out").read_text()
    full, lora = markdown_rows(text, "workload", "final loss")
    assert (full["workload"], full["method"], full["final loss"]) == ("llama-tiny", "full", "3 ± 1.4")
    assert (lora["method"], lora["final loss"]) == ("lora", "3")
    settings = markdown_rows(text, "workload", "runs ok")
    assert [row["runs ok"] for row in settings] == ["2/2 ok", "1/2 ok; 1 error"]
    assert markdown_rows(text, "workload", "weights + optimizer state (MiB)")[0]["weights + optimizer state (MiB)"] == "3 ± 0"
    assert markdown_rows(text, "workload", "step p50 (ms)")[0]["step p50 (ms)"] == "10 ± 0"
    failed = markdown_rows(text, "workload", "error")
    assert [(row["status"], row["error"]) for row in failed] == [("**error**", "RuntimeError: boom")]
    assert "killed" not in text
    assert (tmp_path / "out" / "loss.png").stat().st_size > 1000


def test_a_figure_a_workload_lacks_shows_as_a_dash(tmp_path):
    results = tmp_path / "demo.jsonl"
    append_record(results, make_record("a", "full"))
    append_record(results, make_record("b", "lora", final_loss_above_floor=1.0))
    rows = markdown_rows(render_report(results, tmp_path / "out").read_text(), "workload", "loss above floor")
    assert [row["loss above floor"] for row in rows] == ["–", "1"]


def test_a_torn_last_line_does_not_break_the_report(tmp_path, capsys):
    results = tmp_path / "demo.jsonl"
    append_record(results, make_record("a", "full"))
    with open(results, "a") as f:
        f.write('{"run_id": "b", "lab')
    rows = markdown_rows(render_report(results, tmp_path / "out").read_text(), "workload", "final loss")
    assert [row["method"] for row in rows] == ["full"]
    assert f"{results}:2: skipped, not JSON" in capsys.readouterr().err


def test_glue_tasks_get_their_own_rows_and_scores(tmp_path):
    results = tmp_path / "glue.jsonl"
    for run_id, task, score in (("a", "cola", 0.5), ("b", "rte", 0.75)):
        append_record(results, make_record(run_id, "full", workload="roberta_glue", data={"task": task},
                                           task_score=score))
    rows = markdown_rows(render_report(results, tmp_path / "out").read_text(), "workload", "task score")
    assert [(row["workload"], row["task score"]) for row in rows] == [
        ("roberta_glue-tiny cola", "0.5"), ("roberta_glue-tiny rte", "0.75")
    ]


def test_a_method_whose_every_run_failed_keeps_its_row_marked_failed(tmp_path):
    results = tmp_path / "demo.jsonl"
    append_record(results, make_record("a", "full"))
    append_record(results, make_record("b", "galore", status="oom", error="OutOfMemoryError: CUDA out of memory"))
    text = render_report(results, tmp_path / "out").read_text()
    settings = markdown_rows(text, "workload", "runs ok")
    assert [(row["method"], row["runs ok"]) for row in settings] == [("full", "1/1 ok"), ("galore", "0/1 ok; 1 oom")]
    losses = markdown_rows(text, "workload", "final loss")
    assert [(row["method"], row["final loss"]) for row in losses] == [("full", "2"), ("galore", "–")]
    failed = markdown_rows(text, "workload", "error")
    assert [(row["method"], row["status"], row["error"]) for row in failed] == [
        ("galore", "**oom**", "OutOfMemoryError: CUDA out of memory")
    ]
    assert '<td class="failed">0/1 ok; 1 oom</td>' in (tmp_path / "out" / "index.html").read_text()


def test_empty_torn_and_garbage_lines_are_reported_by_number_and_the_rest_renders(tmp_path, capsys):
    results = tmp_path / "demo.jsonl"
    append_record(results, make_record("a", "full"))
    with open(results, "a") as f:
        f.write("\nnot json at all\n")
    append_record(results, make_record("b", "lora"))
    with open(results, "a") as f:
        f.write('{"run_id": "c", "lab')
    rows = markdown_rows(render_report(results, tmp_path / "out").read_text(), "workload", "final loss")
    assert [row["method"] for row in rows] == ["full", "lora"]
    warnings = capsys.readouterr().err
    assert f"{results}:2: skipped, empty line" in warnings
    assert f"{results}:3: skipped, not JSON" in warnings
    assert f"{results}:5: skipped, not JSON" in warnings


@pytest.mark.parametrize("problem, expected", [
    ("a missing input", "{missing}: no such results file"),
    ("a directory as input", "{folder}: is a directory; give the results files in it"),
    ("--out a file", "--out {file}: is a file; the report is a folder"),
    ("--out under a file", "--out {file}/report: Not a directory; the report cannot be written there"),
    ("an unknown baseline label", "--baseline 'adamw' is not the label of any run here; accepted: full, lora"),
])
def test_a_report_that_cannot_be_made_as_asked_is_refused_in_one_line(problem, expected, tmp_path, capsys):
    results, folder, file = tmp_path / "demo.jsonl", tmp_path / "folder", tmp_path / "file"
    append_record(results, make_record("a", "full"))
    append_record(results, make_record("b", "lora"))
    folder.mkdir()
    file.write_text("")
    inputs = {"a missing input": [str(results), str(tmp_path / "missing.jsonl")],
              "a directory as input": [str(folder)]}.get(problem, [str(results)])
    flags = {"--out a file": ["--out", str(file)], "--out under a file": ["--out", str(file / "report")],
             "an unknown baseline label": ["--baseline", "adamw"]}.get(problem, [])
    assert main(["report", *inputs, *flags]) == 2
    message = expected.format(missing=tmp_path / "missing.jsonl", folder=folder, file=file)
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {message}")


def test_the_same_spec_in_two_inputs_is_reported_from_both(tmp_path, capsys):
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    append_record(first, make_record("a", "full", final_loss=2.0))
    append_record(second, make_record("a", "full", final_loss=4.0))
    report = render_report([first, second], tmp_path / "out")
    assert f"run a (full on llama-tiny) is in both {first} and {second}: both records are reported" in (
        capsys.readouterr().err)
    [row] = markdown_rows(report.read_text(), "workload", "runs ok")
    assert row["runs ok"] == "2/2 ok"
