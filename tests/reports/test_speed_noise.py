"""A tokens/s figure whose runs' step times spread beyond the threshold is marked as noise in
every format, and so is every change computed from it."""

import pandas as pd

from reports.render import render_report
from reports.speed_noise import NOISY_P90_OVER_P50, noisy_step_times
from results.records import append_record
from tests.record_fixtures import make_record, markdown_rows

P50_S = 0.01
"""make_record's step p50."""


def speed_rows(results, out):
    return {row["method"]: row for row in markdown_rows(render_report(results, out).read_text(), "workload", "tokens/s")}


def test_the_threshold_is_strict_and_a_run_without_step_times_is_not_doubted():
    assert not noisy_step_times(P50_S, NOISY_P90_OVER_P50 * P50_S)
    assert noisy_step_times(P50_S, 1.01 * NOISY_P90_OVER_P50 * P50_S)
    assert not noisy_step_times(None, None)


def test_a_row_with_one_noisy_run_is_marked_in_report_md_index_html_and_summary_csv(tmp_path):
    results, out = tmp_path / "demo.jsonl", tmp_path / "out"
    append_record(results, make_record("a", "full", step_time_p90_s=1.1 * P50_S))
    append_record(results, make_record("b", "lora", step_time_p90_s=1.1 * P50_S))
    append_record(results, make_record("c", "lora", seed=1, step_time_p90_s=2 * P50_S))
    append_record(results, make_record("d", "galore", step_time_p90_s=1.2 * P50_S))

    rows = speed_rows(results, out)
    assert (rows["full"]["tokens/s"], rows["full"]["Δ tokens/s vs full"]) == ("1000", "baseline")
    assert (rows["lora"]["tokens/s"], rows["lora"]["Δ tokens/s vs full"]) == ("1000 ± 0 (noisy)", "+0.0% (noisy)")
    assert (rows["galore"]["tokens/s"], rows["galore"]["Δ tokens/s vs full"]) == ("1000", "+0.0%")
    report = (out / "report.md").read_text()
    assert f"p90 step time above {NOISY_P90_OVER_P50:g} × its p50" in report
    assert "near or above the CPU count" in report

    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.tokens_per_s_unreliable.to_dict() == {"full": False, "lora": True, "galore": False}
    assert summary.tokens_per_s_delta_unreliable.to_dict() == {"full": False, "lora": True, "galore": False}
    assert '<td class="number noisy">1000 ± 0 (noisy)</td>' in (out / "index.html").read_text()


def test_a_noisy_baseline_marks_every_change_against_it(tmp_path):
    results, out = tmp_path / "demo.jsonl", tmp_path / "out"
    append_record(results, make_record("a", "full", step_time_p90_s=1.78 * P50_S))  # p50 700 ms, p90 1248 ms
    append_record(results, make_record("b", "lora", step_time_p90_s=1.1 * P50_S))

    rows = speed_rows(results, out)
    assert (rows["full"]["tokens/s"], rows["full"]["Δ tokens/s vs full"]) == ("1000 (noisy)", "baseline")
    assert (rows["lora"]["tokens/s"], rows["lora"]["Δ tokens/s vs full"]) == ("1000", "+0.0% (noisy)")
    assert "fastest **full, lora** (1000 tokens/s; not to be trusted: step times spread" in (out / "report.md").read_text()
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.tokens_per_s_unreliable.to_dict() == {"full": True, "lora": False}
    assert summary.tokens_per_s_delta_unreliable.to_dict() == {"full": True, "lora": True}
