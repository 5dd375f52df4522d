"""The report's memory breakdown plot."""

from core.units import MIB
from reports.render import render_report
from results.records import append_record
from results.schema import MEMORY_CATEGORIES, Memory
from tests.record_fixtures import make_record, markdown_rows


def with_breakdown(run_id: str, label: str, breakdown: dict):
    return make_record(run_id, label, memory=Memory(tracker_peak_bytes=sum(breakdown.values()),
                                                    tracker_at_peak_bytes=breakdown))


def test_report_stacks_the_breakdown_per_method_and_shows_the_tracked_peak(tmp_path):
    results = tmp_path / "demo.jsonl"
    breakdown = {category: (index + 1) * MIB for index, category in enumerate(MEMORY_CATEGORIES)}
    append_record(results, with_breakdown("a", "full", breakdown))
    append_record(results, with_breakdown("b", "lora", {**breakdown, "frozen_weights": 5 * MIB}))
    text = render_report(results, tmp_path / "out").read_text()
    assert "](memory.png)" in text
    assert (tmp_path / "out" / "memory.png").stat().st_size > 1000
    full, lora = markdown_rows(text, "workload", "tracked peak (MiB)")
    assert full["tracked peak (MiB)"] == "21" and lora["tracked peak (MiB)"] == "24"


def test_no_breakdown_no_plot(tmp_path):
    results = tmp_path / "demo.jsonl"
    append_record(results, make_record("a", "full"))
    text = render_report(results, tmp_path / "out").read_text()
    assert "memory.png" not in text and not (tmp_path / "out" / "memory.png").exists()
