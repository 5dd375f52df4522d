"""Reading and appending run records (JSON lines, one results/schema.Record per line)."""

import json
import sys
from pathlib import Path

from results.schema import FINISHED, Record, RecordError


def append_record(path: Path, record: Record):
    """Append one record as one line, flushed, so a crash later loses nothing written before."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record.to_json(), sort_keys=True) + "\n")
        f.flush()


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


def finished_run_ids(path: Path) -> set[str]:
    return {record.run_id for record in read_records(path) if record.status in FINISHED}
