"""The report's memory breakdown plot."""

from meters.tracker import CATEGORIES
from reports.render import render_report
from results.records import append_record


def record(run_id: str, label: str, breakdown: dict | None) -> dict:
    memory = {"tracker_peak_bytes": sum(breakdown.values()), "tracker_at_peak_bytes": breakdown} if breakdown else {}
    return {
        "run_id": run_id, "suite": "demo", "label": label, "status": "ok", "error": None,
        "spec": {"workload": "llama", "size": "tiny", "seed": 0, "method": label},
        "metrics": {"loss_curve": [3.0, 2.0], "final_loss": 2.0}, "memory": memory,
    }


def test_report_stacks_the_breakdown_per_method_and_shows_the_tracked_peak(tmp_path):
    results = tmp_path / "demo.jsonl"
    breakdown = {category: (index + 1) * 2**20 for index, category in enumerate(CATEGORIES)}
    append_record(results, record("a", "full", breakdown))
    append_record(results, record("b", "lora", {**breakdown, "frozen_weights": 5 * 2**20}))
    text = render_report(results, tmp_path / "out").read_text()
    assert "![tracked memory at the peak, by category](memory.png)" in text
    assert (tmp_path / "out" / "memory.png").stat().st_size > 1000
    full_row = next(line for line in text.splitlines() if line.startswith("| llama-tiny | full"))
    assert full_row.split("|")[-2].strip() == str(sum(breakdown.values()) // 2**20)


def test_no_breakdown_no_plot(tmp_path):
    results = tmp_path / "demo.jsonl"
    append_record(results, record("a", "full", None))
    text = render_report(results, tmp_path / "out").read_text()
    assert "memory.png" not in text and not (tmp_path / "out" / "memory.png").exists()
