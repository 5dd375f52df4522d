"""CI baselines: the gated figures of every run of a results file, committed as JSON, and the
comparison of a new results file with them (`harness.py check`).

Gated figures are exact tracker bytes, so any change is real: the tracker peak, every
category at the peak and at the step end, and for trained runs the optimizer state and the
weights plus state. A run's final loss is guarded loosely, so that a method that silently
stops learning is caught. Decreases never fail; they are reported as improvements.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.statuses import RecordKind, Status
from results.records import latest_by_run
from results.schema import Record

BASELINE_VERSION = 1
DEFAULT_TOLERANCE = 0.01
DEFAULT_LOSS_TOLERANCE = 0.02
VERDICTS = ("same", "improved", "REGRESSED", "new", "missing")
FAILING_VERDICTS = ("REGRESSED", "missing")


class BaselineError(ValueError):
    """A baseline or results file that cannot be compared; one line naming the file and why."""


@dataclass
class BaselineRun:
    """One run's gated figures."""

    run_id: str
    """The run's spec hash."""
    label: str
    """The run's method label."""
    workload: str
    """Workload and size (and task), as reports name it."""
    kind: str
    """The record's kind (core.statuses.RecordKind)."""
    figures_bytes: dict[str, int]
    """Gated figure name -> bytes (see gated_figures)."""
    final_loss: float | None = None
    """The last step's training loss (runs only)."""


@dataclass
class Baseline:
    """A committed baseline: the figures of every run of one suite, and the tolerances to apply."""

    runs: list[BaselineRun]
    """Every run of the suite."""
    packages: dict[str, str | None] = field(default_factory=dict)
    """The versions the figures were measured with: every package the records' environment names
    (what every run, method, workload and launcher imports), since any of them can move bytes."""
    tolerance: float = DEFAULT_TOLERANCE
    """Relative rise of a byte figure that fails the check (0.01: 1%)."""
    loss_tolerance: float = DEFAULT_LOSS_TOLERANCE
    """Relative rise of a run's final loss that fails the check."""
    version: int = BASELINE_VERSION
    """The layout of this file."""


@dataclass(frozen=True)
class Comparison:
    """One table row: one figure of one run, the baseline's and now."""

    run: str
    """Label and workload, e.g. "galore (llama-tiny)"."""
    figure: str
    baseline: float | int | str | None
    now: float | int | str | None
    delta_percent: float | None
    verdict: str
    """One of VERDICTS."""


def gated_figures(record: Record) -> dict[str, int]:
    """The byte figures the gate compares, by name; absent figures are left out."""
    memory = record.memory
    figures = {"tracker_peak_bytes": memory.tracker_peak_bytes}
    for moment, breakdown in (("at_peak", memory.tracker_at_peak_bytes), ("at_step_end", memory.tracker_at_step_end_bytes)):
        for category, value in (breakdown or {}).items():
            figures[f"{moment}.{category}_bytes"] = value
    if record.kind == RecordKind.RUN:
        figures["optimizer_state_bytes"] = memory.optimizer_state_bytes
        figures["weights_and_state_bytes"] = memory.weights_and_state_bytes
    return {name: value for name, value in figures.items() if value is not None}


def _run_name(label: str, workload: str) -> str:
    return f"{label} ({workload})"


def baseline_from(records: list[Record], previous: Baseline | None) -> Baseline:
    """A new baseline from the latest record of every run; all must have finished ok."""
    runs = []
    for record in latest_by_run(records):
        if record.status != Status.OK:
            raise BaselineError(
                f"{_run_name(record.label, record.workload_name)} finished {record.status} ({record.error}); "
                "a baseline takes only runs that finished ok"
            )
        runs.append(BaselineRun(record.run_id, record.label, record.workload_name, record.kind,
                                gated_figures(record), record.metrics.final_loss))
    packages = dict(sorted(records[0].environment.packages.items()))
    tolerances = {} if previous is None else {"tolerance": previous.tolerance, "loss_tolerance": previous.loss_tolerance}
    return Baseline(runs=runs, packages=packages, **tolerances)


def read_baseline(path: Path) -> Baseline:
    path = Path(path)
    try:
        values = json.loads(path.read_text())
        values["runs"] = [BaselineRun(**run) for run in values["runs"]]
        baseline = Baseline(**values)
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such baseline file (write one with --update)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise BaselineError(f"{path}: not a baseline file ({type(error).__name__}: {error})") from None
    if baseline.version != BASELINE_VERSION:
        raise BaselineError(f"{path}: baseline version {baseline.version}; this code reads {BASELINE_VERSION}")
    for name in ("tolerance", "loss_tolerance"):
        value = getattr(baseline, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise BaselineError(f"{path}: {name} = {value!r}; accepted: a number in [0, 1)")
    return baseline


def write_baseline(path: Path, baseline: Baseline):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(baseline), indent=1, sort_keys=True) + "\n")


def _verdict(before, now, tolerance: float) -> tuple[float | None, str]:
    """(delta in percent, verdict) of a figure that should not rise by more than tolerance."""
    if before == now:
        return 0.0, "same"
    change = math.inf if before == 0 else (now - before) / abs(before)
    if change > tolerance:
        return 100 * change, "REGRESSED"
    return 100 * change, "improved" if change < -tolerance else "same"


def compare(records: list[Record], baseline: Baseline, tolerance: float, loss_tolerance: float) -> list[Comparison]:
    """One Comparison per figure of every run in either; runs matched by run id and label."""
    now_by_key = {(r.run_id, r.label): r for r in latest_by_run(records)}
    rows = []
    for run in baseline.runs:
        name = _run_name(run.label, run.workload)
        record = now_by_key.pop((run.run_id, run.label), None)
        if record is None:
            rows.append(Comparison(name, "run", "recorded", None, None, "missing"))
            continue
        if record.status != Status.OK:
            rows.append(Comparison(name, "status", Status.OK.value, f"{record.status}: {record.error}", None, "REGRESSED"))
            continue
        figures = gated_figures(record)
        for figure, before in run.figures_bytes.items():
            if figure not in figures:
                rows.append(Comparison(name, figure, before, None, None, "missing"))
                continue
            rows.append(Comparison(name, figure, before, figures[figure], *_verdict(before, figures[figure], tolerance)))
        for figure in figures.keys() - run.figures_bytes.keys():
            rows.append(Comparison(name, figure, None, figures[figure], None, "new"))
        if run.final_loss is not None and record.metrics.final_loss is not None:
            loss = record.metrics.final_loss
            rows.append(Comparison(name, "final_loss", run.final_loss, loss, *_verdict(run.final_loss, loss, loss_tolerance)))
    for record in now_by_key.values():
        rows.append(Comparison(_run_name(record.label, record.workload_name), "run", None, "recorded", None, "new"))
    return rows


def runs_in_common(records: list[Record], baseline: Baseline) -> int:
    """How many baseline runs (run id and label) the records have."""
    return len({(r.run_id, r.label) for r in records} & {(run.run_id, run.label) for run in baseline.runs})


def version_notes(records: list[Record], baseline: Baseline) -> list[str]:
    """One line per package, named by the records or the baseline, whose version differs (a
    package one of them does not name reads as not recorded)."""
    now = records[0].environment.packages if records else {}
    return [
        f"{name} {now.get(name, 'not recorded')} here, {baseline.packages.get(name, 'not recorded')} in the baseline"
        for name in sorted(now.keys() | baseline.packages.keys())
        if now.get(name, "not recorded") != baseline.packages.get(name, "not recorded")
    ]


def format_comparisons(rows: list[Comparison]) -> str:
    """The table: run, figure, baseline, now, delta %, verdict."""

    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    table = [("run", "figure", "baseline", "now", "delta %", "verdict")]
    for row in rows:
        delta = "-" if row.delta_percent is None else f"{row.delta_percent:+.2f}"
        table.append((row.run, row.figure, cell(row.baseline), cell(row.now), delta, row.verdict))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    aligned = []
    for line in table:
        left = [text.ljust(width) for text, width in zip(line[:2], widths[:2])]
        right = [text.rjust(width) for text, width in zip(line[2:5], widths[2:5])]
        aligned.append("  ".join([*left, *right, line[5]]))
    return "\n".join(aligned)
