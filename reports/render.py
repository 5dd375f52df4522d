"""Writes a suite's report from its records: report.md, index.html (the same tables, plots
embedded) and summary.csv (the figures in base units) under reports/out/<suite>/."""

import sys
import tempfile
from pathlib import Path

import pandas as pd

from core.statuses import RecordKind, Status
from reports.document import Code, Heading, Image, Table, Text, to_markdown
from reports.estimates_table import estimates_table
from reports.glance import glance_lines
from reports.header import commands, environment_table
from reports.html import to_html
from reports.labels import row_labels
from reports.memory_plot import memory_breakdown
from reports.paper import ESTIMATED, MEASURED, paper_comparison
from reports.plots import label_colors, loss_vs_tokens
from reports.plots_estimates import memory_vs_size
from reports.plots_summary import memory_vs_loss, throughput_bars
from reports.speed_noise import UNRELIABLE_MARK, UNRELIABLE_NOTE
from reports.summary import display_tables, runs_frame, summary_frame
from results.records import latest_by_run, read_records

REPORTS_DIR = Path(__file__).resolve().parent / "out"
TABLE_TITLES = {"settings": "Runs and settings", "memory": "Memory",
                "breakdown": "Tracked memory at the peak, by category", "speed": "Speed",
                "quality": "Loss, task score and the task's own metrics"}
SUMMARY_NOTES = (
    "Rows are grouped by workload (model and size, and task where one workload runs several). "
    "Figures are means over the seeds that finished ok, `± std` where there are several; Δ columns are "
    "percent changes against the `{baseline}` row of the same workload. Memory in MiB (2^20 bytes): "
    "`tracked peak` and its breakdown are the live-tensor tracker's exact bytes at the peak step; "
    "`weights + optimizer state` is the paper's convention, at the end of training; CUDA and NVML "
    "columns appear for GPU runs only; `process peak RSS` includes the Python and torch libraries. "
    "Step times exclude the warm-up steps. MFU (CUDA only) is 6 × parameters × tokens/s over the GPU's "
    "dense BF16 peak (reports/gpus.py; a dash for a GPU not listed). A GLUE task's score is its metric, or the "
    "mean of its two (MRPC, QQP: F1 and accuracy; STS-B: Pearson and Spearman), each shown beside it."
)


def _format_paper(frame: pd.DataFrame) -> pd.DataFrame:
    shown = frame.astype(object)
    for name in ("paper", ESTIMATED, MEASURED):
        shown[name] = [None if pd.isna(v) else f"{v:.3g}" for v in frame[name]]
    for name in (f"{ESTIMATED} / paper", f"{MEASURED} / paper"):
        shown[name] = [None if pd.isna(v) else f"{v:.2f}×" for v in frame[name]]
    return shown


def _header_blocks(records, paths) -> list:
    suites = ", ".join(dict.fromkeys(r.suite for r in records))
    runs = sum(r.kind == RecordKind.RUN for r in records)
    blocks = [Heading(f"Report: {suites}", 1),
              Text(f"From {', '.join(f'`{p}`' for p in paths)}: {runs} runs, {len(records) - runs} traced estimates "
                   "(the newest record of each run id).")]
    environment = environment_table(records)
    if len(environment):
        blocks += [Heading("Environment", 3), Table(environment)]
    blocks += [Heading("Commands", 3),
               Text("Rebuilt from the records: they hold the suite name and each run's spec, not the command line, "
                    "so a `--set` override given to `run` is in the specs but not in this line."),
               Code(commands(records))]
    return blocks


def _summary_blocks(runs, baseline: str, summary: pd.DataFrame) -> list:
    blocks = [Heading("Summary"), *[Text(line) for line in glance_lines(summary, baseline)],
              Text(SUMMARY_NOTES.format(baseline=baseline)), Text(UNRELIABLE_NOTE)]
    for name, table in display_tables(summary, baseline).items():
        blocks += [Heading(TABLE_TITLES[name], 3), Table(table)]
    failed = [r for r in runs if r.status != Status.OK]
    if failed:
        blocks += [Heading("Runs that did not finish ok", 3),
                   Table(pd.DataFrame([{"workload": r.workload_name, "method": r.label, "seed": str(r.spec.seed),
                                        "status": f"**{r.status}**", "error": r.error} for r in failed]))]
    return blocks


def _plot_blocks(latest, runs, labels, summary, out_dir: Path) -> list:
    colors = label_colors(list(labels.values()))
    plots = (
        (memory_breakdown(runs, labels, out_dir / "memory.png"),
         "Tracked memory at each method's peak step, by what each tensor is (MiB)."),
        (loss_vs_tokens(runs, labels, colors, out_dir / "loss.png"), "Training loss against tokens seen."),
        (throughput_bars(summary, colors, out_dir / "throughput.png") if len(summary) else None,
         f"Throughput after the warm-up steps (mean over seeds; the bar is the std; {UNRELIABLE_MARK}: step "
         "times spread too far to trust the figure)."),
        (memory_vs_loss(summary, colors, out_dir / "memory_vs_loss.png") if len(summary) else None,
         "Tracked peak memory against loss; the dotted line joins the methods no other beats on both."),
        (memory_vs_size(latest, labels, colors, out_dir / "estimates.png"),
         "Traced peak memory against model size (estimates, not measurements), with 24, 40 and 80 GB cards drawn across."),
    )
    shown = [Image(path, caption) for path, caption in plots if path]
    return [Heading("Plots"), *shown] if shown else []


def _check_inputs(paths: list[Path]):
    for path in paths:
        if not path.exists():
            raise ValueError(f"{path}: no such results file")
        if path.is_dir():
            raise ValueError(f"{path}: is a directory; give the results files in it (e.g. {path}/*.jsonl)")


def _writable_folder(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: is a file; the report is a folder (index.html, report.md, summary.csv)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".probe"):
            pass
    except OSError as error:
        raise ValueError(f"--out {out_dir}: {error.strerror}; the report cannot be written there") from None
    return out_dir


def _records_of(paths: list[Path]) -> list:
    """The newest record of each run id in each file. A run id in several files (the same spec in
    two suites) keeps a record from each, said on stderr: none is dropped."""
    per_file = {path: latest_by_run(read_records(path)) for path in paths}
    seen: dict[str, Path] = {}
    for path, records in per_file.items():
        for record in records:
            if record.run_id in seen:
                print(f"warning: run {record.run_id} ({record.label} on {record.workload_name}) is in both "
                      f"{seen[record.run_id]} and {path}: both records are reported", file=sys.stderr)
            seen.setdefault(record.run_id, path)
    return [record for records in per_file.values() for record in records]


def render_report(results_paths, out_dir: Path | None = None, baseline: str = "full") -> Path:
    """Render one or more results files into out_dir (default reports/out/<first file's stem>);
    returns the report.md path. Lines that are not records are reported on stderr and skipped;
    a missing input, an output that cannot be written or a baseline label no run has is a
    ValueError in one line, before anything is written."""
    paths = [Path(results_paths)] if isinstance(results_paths, (str, Path)) else [Path(p) for p in results_paths]
    _check_inputs(paths)
    latest = _records_of(paths)
    if not latest:
        raise ValueError(f"{', '.join(map(str, paths))}: no records to report")
    runs = [record for record in latest if record.kind == RecordKind.RUN]
    traced = [record for record in latest if record.kind == RecordKind.TRACED_ESTIMATE]
    labels_run = sorted({record.label for record in runs})
    if runs and baseline not in labels_run:
        raise ValueError(f"--baseline {baseline!r} is not the label of any run here; accepted: {', '.join(labels_run)}")
    out_dir = _writable_folder(Path(out_dir or REPORTS_DIR / paths[0].stem))
    labels = {**row_labels(runs), **row_labels(traced, across_sizes=True)}
    summary = summary_frame(runs_frame(runs), baseline) if runs else pd.DataFrame()

    blocks = _header_blocks(latest, paths)
    if runs:
        blocks += _summary_blocks(runs, baseline, summary)
        summary.to_csv(out_dir / "summary.csv", index=False)
    paper = paper_comparison(latest)
    if len(paper):
        blocks += [Heading("Paper against ours"),
                   Text("Where a run or a traced estimate matches a setting of the GaLore paper "
                        "(../shared/REFERENCE.md): estimated and measured figures in separate columns, each "
                        "with its ratio to the paper's. GB = 10^9 bytes, the paper's G. The 8-bit Adam 7B figure "
                        "is derived (22.0 GB + the 24.5 GB the paper says GaLore saves against it)."),
                   Table(_format_paper(paper))]
    estimates = estimates_table(latest, labels)
    if len(estimates):
        blocks += [Heading("Traced estimates"),
                   Text("One training step traced on fake tensors (estimates/traced.py): estimates, not "
                        "measurements. GB = 10^9 bytes."), Table(estimates)]
    blocks += _plot_blocks(latest, runs, labels, summary, out_dir)

    title = f"Report: {', '.join(dict.fromkeys(r.suite for r in latest))}"
    (out_dir / "index.html").write_text(to_html(blocks, title))
    report_path = out_dir / "report.md"
    report_path.write_text(to_markdown(blocks))
    return report_path
