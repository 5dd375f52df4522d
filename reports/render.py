"""Writes a suite's report: a Markdown comparison table and its plots."""

from pathlib import Path

from reports import plots
from reports.columns import COLUMNS
from reports.memory_plot import memory_breakdown
from reports.table import runs_frame, summary_table
from results.records import latest_by_run, read_records

REPORTS_DIR = Path(__file__).resolve().parent / "out"


def render_report(results_path: Path, out_dir: Path | None = None) -> Path:
    """Render results_path into out_dir (default reports/out/<results file stem>); returns the .md path."""
    records = read_records(results_path)
    if not records:
        raise ValueError(f"{results_path}: no run records to report")
    out_dir = Path(out_dir or REPORTS_DIR / Path(results_path).stem)
    out_dir.mkdir(parents=True, exist_ok=True)
    latest = latest_by_run(records)
    runs = runs_frame(latest)

    lines = [f"# Report: {Path(results_path).stem}", "", f"From `{results_path}` ({len(latest)} runs).", ""]
    table = summary_table(runs)
    # Throughputs read best as whole numbers, everything else with four significant digits; a
    # figure a workload does not have (a floor, a task score) shows as a dash, not nan.
    formats = {column.title: column.number_format for column in COLUMNS}
    number_formats = [formats.get(title, ".4g") for title in table.columns]
    shown = table.astype(object).where(table.notna(), None)
    lines += ["## Comparison", "", shown.to_markdown(index=False, floatfmt=number_formats, missingval="–"), ""]
    lines += [
        "Means over the seeds that finished ok. Memory in MiB (2^20 bytes). "
        "`weights + optimizer state` counts parameter and optimizer-state tensors at the end of "
        "training; `process peak RSS` is the worker process's resident peak, libraries included.",
        "",
    ]
    if plots.loss_curves(latest, out_dir / "loss.png"):
        lines += ["## Training loss", "", "![training loss per step](loss.png)", ""]
    if memory_breakdown(latest, out_dir / "memory.png"):
        lines += [
            "## Memory at the peak",
            "",
            "![tracked memory at the peak, by category](memory.png)",
            "",
            "Live tensor bytes at each run's peak step (the tracker watches the timing warm-up steps), "
            "by what each tensor is.",
            "",
        ]
    failed = runs[runs.status != "ok"]
    if len(failed):
        lines += ["## Runs that did not finish ok", ""]
        lines += [f"- {r.method} on {r.workload} seed {r.seed}: **{r.status}** {r.error}" for r in failed.itertuples()]
        lines.append("")
    report_path = out_dir / "report.md"
    report_path.write_text("\n".join(lines))
    return report_path
