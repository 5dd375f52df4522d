"""Reports render from records alone."""

from results.records import append_record
from reports.render import render_report


def record(run_id, label, status="ok", final_loss=2.0, seed=0, error=None):
    return {
        "run_id": run_id, "suite": "demo", "label": label, "status": status, "error": error,
        "spec": {"workload": "llama", "size": "tiny", "seed": seed, "method": label},
        "metrics": {"loss_curve": [3.0, 2.5, final_loss], "final_loss": final_loss, "eval_loss": final_loss + 0.1,
                    "tokens_per_s": 1000.0, "step_time_p50_s": 0.01, "loss_floor": 1.0,
                    "final_loss_above_floor": final_loss - 1.0} if status == "ok" else {},
        "memory": {"trainable_weight_bytes": 2**20, "frozen_weight_bytes": 0, "optimizer_state_bytes": 2**21,
                   "process_peak_rss_bytes": 2**28} if status == "ok" else {},
    }


def test_report_has_one_row_per_method_and_lists_failures(tmp_path):
    results = tmp_path / "demo.jsonl"
    append_record(results, record("a", "full", final_loss=2.0, seed=0))
    append_record(results, record("b", "full", final_loss=4.0, seed=1))
    append_record(results, record("c", "lora", status="error", error="RuntimeError: boom"))
    append_record(results, record("d", "lora", status="oom", error="killed"))
    append_record(results, record("d", "lora", final_loss=3.0))  # a retry replaces the earlier record

    report = render_report(results, tmp_path / "out")
    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| llama-tiny")]
    assert len(rows) == 2
    full_row, lora_row = (row.split("|") for row in rows)
    assert full_row[2].strip() == "full" and full_row[3].strip() == "2/2" and full_row[4].strip() == "3"
    assert lora_row[3].strip() == "1/2"
    assert "weights + optimizer state (MiB)" in text and full_row[9].strip() == "3"
    assert "**error** RuntimeError: boom" in text
    assert "killed" not in text
    assert (tmp_path / "out" / "loss.png").stat().st_size > 1000


def test_a_figure_a_workload_lacks_shows_as_a_dash(tmp_path):
    results = tmp_path / "demo.jsonl"
    without_floor = record("a", "full")
    del without_floor["metrics"]["final_loss_above_floor"]
    append_record(results, without_floor)
    append_record(results, record("b", "lora"))
    rows = [line.split("|") for line in render_report(results, tmp_path / "out").read_text().splitlines()
            if line.startswith("| llama-tiny")]
    assert [row[6].strip() for row in rows] == ["–", "1"]  # the "loss above floor" column


def test_a_torn_last_line_does_not_break_the_report(tmp_path):
    results = tmp_path / "demo.jsonl"
    append_record(results, record("a", "full"))
    with open(results, "a") as f:
        f.write('{"run_id": "b", "lab')
    assert "| llama-tiny | full" in render_report(results, tmp_path / "out").read_text()


def test_glue_tasks_get_their_own_rows_and_scores(tmp_path):
    results = tmp_path / "glue.jsonl"
    for run_id, task, score in (("a", "cola", 0.5), ("b", "rte", 0.75)):
        entry = record(run_id, "full")
        entry["spec"] = {**entry["spec"], "workload": "roberta_glue", "data": {"task": task}}
        entry["metrics"]["score"] = score
        append_record(results, entry)
    text = render_report(results, tmp_path / "out").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| roberta_glue-tiny")]
    assert [row.split("|")[1].strip() for row in rows] == ["roberta_glue-tiny cola", "roberta_glue-tiny rte"]
    assert "task score" in text and "0.75" in rows[1]
