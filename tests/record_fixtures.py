"""Records for report tests, built through the schema like the runner builds them."""

from core.spec import RunSpec
from core.units import MIB
from results.schema import Memory, Metrics, Record, Setting


def make_record(run_id: str, label: str, status: str = "ok", final_loss: float = 2.0, seed: int = 0,
                error: str | None = None, workload: str = "llama", data: dict | None = None,
                memory: Memory | None = None, **metrics) -> Record:
    """A tiny run's record; a run that did not finish ok has no figures."""
    spec = RunSpec(workload=workload, size="tiny", method=label, seed=seed, data=data or {})
    # What training/setting.py resolves for a registered method; the labels here may be any name.
    setting = Setting(task=spec.data.get("task"), corpus=spec.data.get("corpus"))
    finished = status == "ok"
    figures = Metrics(loss_curve=[3.0, 2.5, final_loss], final_loss=final_loss, eval_loss=final_loss + 0.1,
                      tokens_per_s=1000.0, step_time_p50_s=0.01, **metrics)
    default_memory = Memory(trainable_weight_bytes=MIB, frozen_weight_bytes=0, optimizer_state_bytes=2 * MIB,
                            process_peak_rss_bytes=256 * MIB)
    return Record(run_id=run_id, suite="demo", label=label, spec=spec, setting=setting, status=status, error=error,
                  metrics=figures if finished else Metrics(), memory=(memory or default_memory) if finished else Memory())


def markdown_rows(text: str, first_cell: str, heading: str | None = None) -> list[dict[str, str]]:
    """The rows of the first Markdown table whose header row starts with `first_cell` (and has a
    column `heading`, where given), as dicts keyed by the column headings; a table may be
    indented (inside a list item)."""
    lines = text.splitlines()
    cells = lambda line: [cell.strip() for cell in line.strip().strip("|").split("|")]  # noqa: E731
    start = next(i for i, line in enumerate(lines)
                 if line.lstrip().startswith(f"| {first_cell}") and (heading is None or heading in cells(line)))
    headings = cells(lines[start])
    rows = []
    for line in lines[start + 2 :]:
        if not line.lstrip().startswith("|"):
            break
        rows.append(dict(zip(headings, cells(line), strict=True)))
    return rows
