"""How a run ended and what a record holds, as enums: a mistyped status is an AttributeError
where it is written, not a comparison that is silently never true. Both are str enums, so a
record's JSON holds the plain value ("ok") and reads back the same."""

from enum import StrEnum


class Status(StrEnum):
    """How a run or estimate ended."""

    OK = "ok"
    OOM = "oom"
    """Out of memory: an OutOfMemoryError, or the kernel's OOM killer."""
    NAN = "nan"
    """A non-finite loss."""
    DIVERGED = "diverged"
    """The loss rose well above its start, or fell and came back to the uniform-prediction level."""
    TIMEOUT = "timeout"
    """Ran past --run-timeout (or the Slurm job's time limit)."""
    KILLED = "killed"
    """Ended by a signal from outside, or the harness was stopped."""
    ERROR = "error"
    """Anything else that raised."""


FINISHED = frozenset({Status.OK, Status.OOM, Status.NAN, Status.DIVERGED, Status.TIMEOUT})
"""Outcomes that re-running the same spec would repeat, so resume skips them (timeouts are
retried with --retry-timeouts); killed and error runs are retried."""
TRAINED = frozenset({Status.OK, Status.DIVERGED})
"""Outcomes of a run that trained to its end, so its figures are whole."""


class RecordKind(StrEnum):
    """What a record holds."""

    RUN = "run"
    """Trained and measured."""
    TRACED_ESTIMATE = "traced_estimate"
    """The spec's first steps traced on fake tensors (estimates/traced.py): estimates, never to be
    mixed with measured figures."""
