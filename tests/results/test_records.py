"""Records appended whole: a torn tail (a writer killed mid-write) is cut before the next record."""

from results.records import append_record, read_records
from tests.record_fixtures import make_record


def test_a_torn_tail_is_cut_and_the_next_record_survives(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    append_record(results, make_record("a", "full"))
    with open(results, "a") as f:
        f.write('{"run_id": "b", "lab')
    append_record(results, make_record("c", "lora"))
    assert [r.run_id for r in read_records(results)] == ["a", "c"]
    assert f"warning: {results}: cut a torn last line of 20 bytes" in capsys.readouterr().err
