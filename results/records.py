"""Reading and appending run records (JSON lines)."""

import json
from pathlib import Path

STATUSES = ("ok", "oom", "nan", "error")
FINISHED = ("ok", "oom", "nan")
"""Outcomes that re-running the same spec would repeat; `error` runs are retried on resume."""


def append_record(path: Path, record: dict):
    """Append one record as one line, flushed, so a crash later loses nothing written before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()


def read_records(path: Path) -> list[dict]:
    """All records in file order; a torn last line (a killed writer) is skipped, not fatal."""
    if not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def latest_by_run(records: list[dict]) -> list[dict]:
    """The last record of each run id, in first-seen order (a retried run replaces its error)."""
    latest: dict[str, dict] = {}
    for record in records:
        latest[record["run_id"]] = record
    return list(latest.values())


def finished_run_ids(path: Path) -> set[str]:
    return {r["run_id"] for r in read_records(path) if r.get("status") in FINISHED}
