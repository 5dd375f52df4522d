"""Rendering a committed results file: tests/data/report_smoke.jsonl holds the first ten records
of `python harness.py run suites/smoke.toml` (CPU) and the traced 60M estimates of
`python harness.py estimate --size 60m --method all --seq 256` (plus LoRA, ReLoRA and Low-Rank
at Table 2's rank 128). Memory figures are exact tracker bytes, so they are asserted; times are not."""

import re
from pathlib import Path

import pandas as pd
import pytest

from reports.render import render_report
from tests.record_fixtures import markdown_rows

DATA = Path(__file__).parents[1] / "data" / "report_smoke.jsonl"
PLOTS = ("memory.png", "loss.png", "throughput.png", "memory_vs_loss.png", "estimates.png")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return render_report(DATA, out).read_text(), out


def row(rows: list[dict], workload: str, method: str) -> dict:
    return next(r for r in rows if r["workload"] == workload and r["method"] == method)


def test_summary_tables_hold_the_expected_figures(report):
    text, _ = report
    memory = markdown_rows(text, "workload", "tracked peak (MiB)")
    assert row(memory, "llama-tiny", "full")["tracked peak (MiB)"] == "22.01"
    assert row(memory, "llama-tiny", "full")["Δ tracked peak vs full"] == "baseline"
    assert row(memory, "llama-tiny", "adam8bit")["Δ tracked peak vs full"] == "-9.3%"
    assert row(memory, "llama-tiny", "lora")["Δ tracked peak vs full"] == "+13.0%"
    breakdown = markdown_rows(text, "workload", "optimizer state (MiB)")
    assert row(breakdown, "llama-tiny", "full")["optimizer state (MiB)"] == "2.756"
    assert row(breakdown, "llama-tiny", "lora")["frozen weights (MiB)"] == "0.377"
    quality = markdown_rows(text, "workload", "task score")
    assert row(quality, "roberta_glue-tiny synthetic-classification", "full")["task score"] == "1"
    assert row(quality, "llama-tiny", "full")["task score"] == "–"
    settings = markdown_rows(text, "workload", "runs ok")
    assert row(settings, "llama-tiny", "galore")["lr"] == "0.01"
    assert row(settings, "llama-tiny", "galore")["options"] == "galore (update_proj_gap=20)"
    assert "python harness.py run suites/smoke.toml" in text
    assert ("`llama-tiny`: least memory **adam8bit** (19.96 MiB tracked peak, -9.3% vs full)" in text)
    assert "best task score **full, adam8bit** (1)" in text  # ties are named together


def test_estimates_stay_apart_and_meet_the_paper(report):
    text, _ = report
    estimates = markdown_rows(text, "workload", "estimated peak (GB)")
    assert {r["method"] for r in estimates} >= {"full", "lora (rank=128)", "lora (rank=default)"}
    paper = markdown_rows(text, "paper setting")
    full = row([{**r, "workload": r["paper setting"]} for r in paper],
               "Table 2 memory: 60m, weights + optimizer state, BF16", "full")
    assert (full["paper"], full["ours, traced estimate"], full["ours, traced estimate / paper"]) == ("0.36", "0.348", "0.97×")
    assert full["ours, measured"] == "–"
    assert {r["method"] for r in paper} == {"full", "galore", "low_rank", "lora", "relora"}


def test_every_plot_is_written_and_embedded(report):
    _, out = report
    for name in PLOTS:
        assert (out / name).stat().st_size > 5000, name
    page = (out / "index.html").read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == len(PLOTS)
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_summary_csv_has_a_row_per_workload_and_label_in_base_units(report):
    _, out = report
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 10
    full = summary[(summary.workload == "llama-tiny") & (summary.method == "full")].iloc[0]
    assert full["memory.tracker_peak_bytes_mean"] == 23080732
    assert full["runs ok"] == "1/1 ok"
