"""The one suite runner every launcher goes through: it holds the results file's lock, finds
the runs not finished there (resume), hands them to the launcher's session, appends each
record exactly once as the session yields it, removes the checkpoints of runs that will not
run again, and turns SIGINT, SIGTERM and SIGHUP into a clean stop (StopSignals).
"""

import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

from core.plan import PlannedRun, Suite
from core.statuses import FINISHED, Status
from launchers.base import RunSettings, RunStopped, Session, SuiteStopped
from results.records import RecordNotWritten, append_record, check_writable, finished_run_ids, results_lock
from results.schema import Record

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a suite cleanly: Ctrl-C, kill, and a closed terminal (SIGHUP, as SIGTERM)."""


class StopSignals:
    """STOP_SIGNALS while a suite runs. Each is noted; inside `waiting()` (a session
    waiting on its runs) it is raised at once as RunStopped, elsewhere at the session's next
    `check()` or `waiting()`: a stop never cuts a record or a file of jobs in half."""

    def __init__(self):
        self.received: list[int] = []
        self._waiting = False
        self._handlers = {}

    def __enter__(self):
        self._handlers = {number: signal.signal(number, self._note) for number in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._handlers.items():
            signal.signal(number, handler)

    def _note(self, signal_number, frame):
        self.received.append(signal_number)
        if self._waiting:
            self._waiting = False
            raise RunStopped(signal_number)

    def check(self):
        """RunStopped if a stop was noted."""
        if self.received:
            raise RunStopped(self.received[0])

    @contextmanager
    def waiting(self):
        """The block may be cut short by a stop (RunStopped raised inside it)."""
        self.check()
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False


def checkpoints_of(results_path: Path) -> Path:
    """Where the runs of a results file keep their checkpoints: one folder per run id."""
    return Path(results_path).parent / "checkpoints" / Path(results_path).stem


def pending_runs(suite: Suite, results_path: Path, retry_timeouts: bool) -> list[PlannedRun]:
    """The suite's runs not finished in results_path (a timed-out one again with retry_timeouts).
    Call it holding the results file's lock."""
    done = finished_run_ids(results_path, retried=(Status.TIMEOUT,) if retry_timeouts else ())
    return [run for run in suite.runs if run.spec.run_id not in done]


def _keep(results_path: Path, record: Record):
    """Append the run's record; only once it is written do its checkpoints go (a finished run
    will not run again). RecordNotWritten, saying what becomes of the run, where it cannot be."""
    try:
        append_record(results_path, record)
    except RecordNotWritten as error:
        run = PlannedRun(record.label, record.spec).description
        raise RecordNotWritten(f"{error}: the {record.status} record of {run} was not written; the run runs again "
                               "on resume, its checkpoints are kept") from None
    if record.status in FINISHED:
        shutil.rmtree(checkpoints_of(results_path) / record.run_id, ignore_errors=True)


def run_suite(session: Session, suite: Suite, results_path: Path, settings: RunSettings) -> list[Record]:
    """Run every planned run not already finished in results_path through the launcher's
    session, holding the file's lock; returns the new records. SuiteStopped when SIGINT or
    SIGTERM arrives (the run it cut short recorded, when there was one)."""
    records = []
    check_writable(results_path)
    with results_lock(results_path), StopSignals() as stops:
        pending = pending_runs(suite, results_path, settings.retry_timeouts)
        print(f"{suite.name}: {len(suite.runs)} runs, {len(suite.runs) - len(pending)} already finished, "
              f"{session.plan(pending)} -> {results_path}", flush=True)
        try:
            for planned, record, where in session.run(suite.name, pending, stops):
                _keep(results_path, record)
                records.append(record)
                summary = record.error or f"final loss {record.metrics.final_loss:.4f}"
                print(f"[{len(records)}/{len(pending)}] {planned.description} ({where}): {record.status}: {summary} "
                      f"({record.wall_s or 0:.1f} s)", flush=True)
        except RunStopped as stopped:
            cut_short = "no run was in progress"
            if stopped.record is not None:
                _keep(results_path, stopped.record)
                records.append(stopped.record)
                cut_short = "the run in progress is recorded killed and will run again on resume"
            raise SuiteStopped(stopped.signal_number, f"{stopped}: {cut_short}; records in {results_path}") from None
    return records
