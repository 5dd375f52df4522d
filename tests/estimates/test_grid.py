"""estimate --grid: a traced estimate record of every method at every size."""

import pytest

import harness
from results.records import read_records

pytestmark = pytest.mark.slow  # a trace per method and size, in processes


def test_grid_writes_a_record_per_method_and_size(tmp_path, capsys):
    records = tmp_path / "grid.jsonl"
    argv = ["estimate", "--grid", "--sizes", "tiny,small", "--method", "full", "--method", "galore", "--seq", "16",
            "--jobs", "1", "--records", str(records)]
    assert harness.main(argv) == 0
    written = read_records(records)
    assert sorted((r.spec.method, r.spec.size) for r in written) == [
        ("full", "small"), ("full", "tiny"), ("galore", "small"), ("galore", "tiny")]
    assert all(r.kind == "traced_estimate" and r.status == "ok" for r in written)
    galore = [r.memory for r in written if r.spec.method == "galore"]
    assert all(m.tracker_refresh_peak_bytes is not None for m in galore)
    assert "4 estimate records appended" in capsys.readouterr().out


def test_grid_without_records_is_one_line(capsys):
    assert harness.main(["estimate", "--grid", "--sizes", "tiny"]) == 2
    assert capsys.readouterr().err.strip() == "error: --grid writes estimate records: give --records PATH"
