"""The check's summary (summary.md in its output folder), from the records and logs it has so
far: rewritten after every command, so a cut-off check still shows every finished part."""

from pathlib import Path

from core.statuses import Status
from core.units import GB, GIB
from estimates.paper_numbers import PAPER_7B_PEAK_GB, PAPER_TABLE_11
from reports.gpus import mfu, parameter_count
from results.records import latest_by_run, read_records

OUR_TRACED_7B_GB = 21.0
"""GPU-CHECKS.md's traced figure for 7B 8-bit GaLore layer-wise at batch 1 x 256 (rank 1024)."""


def _records(path: Path) -> list:
    return latest_by_run(read_records(path)) if path.exists() else []


def _gib(value) -> str:
    return "–" if value is None else f"{value / GIB:.2f}"


def _cell(record) -> tuple:
    return record.spec.method, record.spec.size, record.spec.seq_len


def _outcome(record) -> str:
    return "ok" if record.status == Status.OK else f"{record.status}: {(record.error or '').splitlines()[0][:80]}"


def traced_against_device(out: Path) -> list[str]:
    """Part 1: each cell's max_memory_allocated over its traced peak, and the tracker's own CUDA figure."""
    traced = {_cell(r): r for r in _records(out / "traced.jsonl") if r.status == Status.OK}
    lines = ["| method | size | seq | traced GiB | max allocated GiB | allocated / traced | tracker on CUDA GiB | run |",
             "|---|---|---|---|---|---|---|---|"]
    worst = None
    for record in _records(out / "device.jsonl"):
        estimate = traced.get(_cell(record))
        allocated = record.memory.cuda_max_allocated_bytes
        peak = estimate.memory.tracker_peak_bytes if estimate else None
        ratio = allocated / peak if allocated and peak else None
        if ratio is not None and (worst is None or abs(ratio - 1) > abs(worst[0] - 1)):
            worst = (ratio, _cell(record))
        lines.append(f"| {record.spec.method} | {record.spec.size} | {record.spec.seq_len} | {_gib(peak)} "
                     f"| {_gib(allocated)} | {'–' if ratio is None else f'{ratio:.3f}'} "
                     f"| {_gib(record.memory.tracker_peak_bytes)} | {_outcome(record)} |")
    if worst:
        method, size, seq = worst[1]
        lines.append(f"\nWorst cell: {method} llama-{size} seq {seq}, allocated / traced {worst[0]:.3f} (goal: within 5%).")
    return lines


def table_11(out: Path) -> list[str]:
    """Part 3: tokens/s, MFU and peak beside the paper's Table 11, and 8-bit GaLore's overhead."""
    lines = ["| method | tokens/s | MFU % | max allocated GB | paper GB | paper tokens/s | run |",
             "|---|---|---|---|---|---|---|"]
    speed = {}
    for record in _records(out / "table11.jsonl"):
        metrics, memory, spec = record.metrics, record.memory, record.spec
        parameters = parameter_count((memory.trainable_weight_bytes or 0) + (memory.frozen_weight_bytes or 0), spec.dtype)
        utilization = mfu(metrics.tokens_per_s, parameters, record.environment.device_name)
        paper_gb, paper_speed = PAPER_TABLE_11.get(spec.method, (None, None))
        speed[spec.method] = metrics.tokens_per_s
        allocated = memory.cuda_max_allocated_bytes
        lines.append(f"| {spec.method} | {metrics.tokens_per_s or 0:.0f} "
                     f"| {'–' if utilization is None else f'{100 * utilization:.1f}'} "
                     f"| {'–' if allocated is None else f'{allocated / GB:.2f}'} | {paper_gb or '–'} "
                     f"| {paper_speed or '–'} | {_outcome(record)} |")
    if speed.get("adam8bit") and speed.get("galore8bit"):
        overhead = speed["adam8bit"] / speed["galore8bit"] - 1
        lines.append(f"\n8-bit GaLore's overhead over 8-bit Adam: {100 * overhead:.1f}% of step time "
                     "(the paper: 17%; our goal: at most 10%).")
    return lines


def seven_b(out: Path) -> list[str]:
    """Part 4: the 7B run's measured peak beside our traced figure and the paper's."""
    traced = [r for r in _records(out / "traced.jsonl") if r.spec.size == "7b" and r.status == Status.OK]
    lines = []
    for record in _records(out / "7b.jsonl"):
        allocated = record.memory.cuda_max_allocated_bytes
        measured = "–" if allocated is None else f"{allocated / GB:.2f}"
        now = f"{traced[-1].memory.tracker_peak_bytes / GB:.2f}" if traced else "–"
        lines.append(f"7B {record.spec.method}: max allocated {measured} GB ({_outcome(record)}); traced now {now} GB, "
                     f"GPU-CHECKS.md's traced {OUR_TRACED_7B_GB} GB, the paper's "
                     f"{PAPER_7B_PEAK_GB[('galore8bit_layerwise', 512, 1024)]} GB")
    return lines


def runs_table(path: Path) -> list[str]:
    """Parts 5 and 6: one row per run, its outcome, memory and speed."""
    lines = ["| run | ranks | max allocated GiB | tracked peak GiB | tokens/s | outcome |", "|---|---|---|---|---|---|"]
    for record in _records(path):
        lines.append(f"| {record.label} | {record.spec.nproc} | {_gib(record.memory.cuda_max_allocated_bytes)} "
                     f"| {_gib(record.memory.tracker_peak_bytes)} | {record.metrics.tokens_per_s or 0:.0f} "
                     f"| {_outcome(record)} |")
    return lines


def write_summary(out: Path, progress: list[str]) -> Path:
    """summary.md from what the output folder holds now; `progress` is one line per command so far."""
    bench = out / "logs" / "part2-1.log"
    sections = [
        ("Progress", progress),
        ("1. The traced estimate against the device", traced_against_device(out)),
        ("2. bench-optim at 60M on CUDA", ["```", *(bench.read_text().splitlines() if bench.exists() else []), "```"]),
        ("3. Table 11: LLaMA 1B, batch 1 x 256, BF16", table_11(out)),
        ("4. 7B, 8-bit GaLore layer-wise, batch 1 x 256", seven_b(out)),
        ("5. DDP and FSDP2 on NCCL, 2 ranks", runs_table(out / "nccl.jsonl")),
        ("6. Every method's CUDA path, LLaMA 60M", runs_table(out / "every_method.jsonl")),
    ]
    text = "# make gpu-check\n\n" + "\n\n".join(f"## {title}\n\n" + "\n".join(lines) for title, lines in sections) + "\n"
    path = out / "summary.md"
    path.write_text(text)
    return path
