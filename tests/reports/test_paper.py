"""Paper against ours: a traced 7B estimate sits beside the paper's figure, in the estimate column."""

from dataclasses import replace

from reports.paper import ESTIMATED, MEASURED, paper_comparison
from results.schema import Memory
from tests.record_fixtures import make_record


def test_a_7b_estimate_meets_the_papers_figure_in_the_estimate_column():
    record = make_record("a", "full", memory=Memory(tracker_peak_bytes=60 * 10**9))
    spec = replace(record.spec, size="7b", seq_len=2048, batch_size=1, dtype="bfloat16")
    estimate = replace(record, spec=spec, kind="traced_estimate")
    other_length = replace(estimate, run_id="b", spec=replace(spec, seq_len=256))
    rows = paper_comparison([estimate, other_length]).to_dict("records")
    assert len(rows) == 1
    row = rows[0]
    assert (row["paper setting"], row["method"], row["paper"]) == ("7B peak: batch 1, seq 2048, BF16", "full", 58.0)
    assert row[ESTIMATED] == 60.0 and round(row[f"{ESTIMATED} / paper"], 3) == 1.034
    assert row[MEASURED] is None
