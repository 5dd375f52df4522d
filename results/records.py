"""Reading and appending run records (JSON lines, one results/schema.Record per line).

A results file may be written for days by a harness that can be killed at any moment, so:
every record is one complete line written with a single O_APPEND write and fsynced; a torn
last line (a writer killed mid-write) is cut off, with a warning, before the next record is
appended; unreadable lines are reported with their line numbers, never skipped silently; and
one harness at a time writes a results file (results_lock).
"""

import fcntl
import json
import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from core.statuses import FINISHED, Status
from results.schema import Record, RecordError


class ResultsLocked(RuntimeError):
    """Another harness holds the results file; the message says who."""


def _repair_torn_tail(descriptor: int, path: Path):
    """Cut a last line that has no newline (a writer killed mid-write), saying so."""
    size = os.fstat(descriptor).st_size
    if size == 0 or os.pread(descriptor, 1, size - 1) == b"\n":
        return
    start = size
    while start > 0 and os.pread(descriptor, 1, start - 1) != b"\n":
        start -= 1
    os.ftruncate(descriptor, start)
    print(f"warning: {path}: cut a torn last line of {size - start} bytes (a writer killed mid-write)", file=sys.stderr)


class RecordNotWritten(RuntimeError):
    """A record could not be appended whole (a full disk, a read-only file, an I/O error); the
    file holds no part of it. The message names the file and the system's reason."""


def _write_whole(descriptor: int, line: bytes):
    # os.write may write part of the line (a disk filling up): write the rest until all is out
    # or the system refuses, which raises.
    written = 0
    while written < len(line):
        written += os.write(descriptor, line[written:])


def append_record(path: Path, record: Record):
    """Append one record as one whole line and fsync it, after repairing a torn tail; on any
    failure the file is cut back to where it was and RecordNotWritten is raised."""
    path = Path(path)
    line = (json.dumps(record.to_json(), sort_keys=True) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as error:
        raise RecordNotWritten(f"{path}: {error.strerror}") from None
    try:
        _repair_torn_tail(descriptor, path)
        before = os.fstat(descriptor).st_size
        try:
            _write_whole(descriptor, line)
            os.fsync(descriptor)
        except OSError as error:
            os.ftruncate(descriptor, before)  # no part of a record is left to read as a torn line
            raise RecordNotWritten(f"{path}: {error.strerror}") from None
    finally:
        os.close(descriptor)


class ResultsNotWritable(ValueError):
    """Records could not be appended to a results file: found before any run."""


def check_writable(path: Path):
    """ResultsNotWritable, before any run, where records could not be appended to `path`: a
    results file that cannot be opened for appending, or a folder in which no file can be made."""
    path = Path(path)
    try:
        if path.exists():
            if path.is_dir():
                raise IsADirectoryError(21, "is a directory, not a results file")
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        else:
            existing = next(folder for folder in path.parents if folder.exists())
            if not existing.is_dir():
                raise NotADirectoryError(20, f"{existing} is a file, not a folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
                pass
    except OSError as error:
        raise ResultsNotWritable(f"{path}: {error.strerror}; no record could be written there") from None


def read_records(path: Path) -> list[Record]:
    """All records in file order. A line that is not a record (empty, a torn last line from a
    killed writer, garbage) is reported on stderr with its line number and skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():  # the writer never leaves one: something else edited the file
            print(f"warning: {path}:{number}: skipped, empty line", file=sys.stderr)
            continue
        try:
            records.append(Record.from_json(json.loads(line)))
        except json.JSONDecodeError as error:
            print(f"warning: {path}:{number}: skipped, not JSON ({error.msg})", file=sys.stderr)
        except RecordError as error:
            print(f"warning: {path}:{number}: skipped, not a run record ({error})", file=sys.stderr)
    return records


def latest_by_run(records: list[Record]) -> list[Record]:
    """The last record of each run id, in first-seen order (a retried run replaces its error)."""
    latest: dict[str, Record] = {}
    for record in records:
        latest[record.run_id] = record
    return list(latest.values())


def finished_run_ids(path: Path, retried: tuple[Status, ...] = ()) -> set[str]:
    """Run ids whose latest record is finished (core.statuses.FINISHED), less `retried` statuses."""
    return {r.run_id for r in latest_by_run(read_records(path)) if r.status in FINISHED and r.status not in retried}


@contextmanager
def results_lock(path: Path):
    """Hold an exclusive lock on the results file for as long as the block runs; a second
    holder is refused at once with ResultsLocked naming the first (pid, host, start)."""
    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise ResultsLocked(f"{path} is being written by {holder}; wait for it or use another --results") from None
        lock.seek(0)
        lock.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        lock.write(f"harness pid {os.getpid()} on {socket.gethostname()} since {started} UTC")
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()
            fcntl.flock(lock, fcntl.LOCK_UN)
