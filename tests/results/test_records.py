"""Records appended whole: a torn tail (a writer killed mid-write) is cut before the next record;
a record the disk refuses leaves no part of itself; results that cannot be written are found
before any run."""

import errno
import os

import pytest

from results import records
from results.records import RecordNotWritten, ResultsNotWritable, append_record, check_writable, read_records
from tests.record_fixtures import make_record


def test_a_torn_tail_is_cut_and_the_next_record_survives(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    append_record(results, make_record("a", "full"))
    with open(results, "a") as f:
        f.write('{"run_id": "b", "lab')
    append_record(results, make_record("c", "lora"))
    assert [r.run_id for r in read_records(results)] == ["a", "c"]
    assert f"warning: {results}: cut a torn last line of 20 bytes" in capsys.readouterr().err


@pytest.mark.parametrize("fault", ["no space", "a short write, then no space", "no space at fsync"])
def test_a_record_that_cannot_be_written_whole_leaves_nothing_of_itself(fault, tmp_path, monkeypatch):
    results = tmp_path / "r.jsonl"
    append_record(results, make_record("a", "full"))
    before = results.read_bytes()
    real_write = os.write

    def write(descriptor, data):
        if fault == "a short write, then no space" and len(data) > 10:
            return real_write(descriptor, data[:10])  # the disk took 10 bytes
        raise OSError(errno.ENOSPC, "No space left on device")

    if fault == "no space at fsync":
        monkeypatch.setattr(records.os, "fsync", lambda descriptor: write(descriptor, b""))
    else:
        monkeypatch.setattr(records.os, "write", write)
    with pytest.raises(RecordNotWritten, match=f"^{results}: No space left on device$"):
        append_record(results, make_record("b", "lora"))
    monkeypatch.undo()
    assert results.read_bytes() == before  # no torn line for the next reader or writer
    append_record(results, make_record("c", "lora"))
    assert [r.run_id for r in read_records(results)] == ["a", "c"]


def test_results_that_cannot_be_written_are_refused_before_any_run(tmp_path, monkeypatch):
    with pytest.raises(ResultsNotWritable, match="is a directory, not a results file"):
        check_writable(tmp_path)
    (tmp_path / "r.jsonl").write_text("")
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).startswith(str(tmp_path)) and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(records.os, "open", read_only)
    with pytest.raises(ResultsNotWritable, match=r"r.jsonl: Permission denied; no record could be written there"):
        check_writable(tmp_path / "r.jsonl")
    file_in_the_way = tmp_path / "file"
    file_in_the_way.write_text("")
    with pytest.raises(ResultsNotWritable, match="file is a file, not a folder; no record could be written there"):
        check_writable(file_in_the_way / "r.jsonl")
