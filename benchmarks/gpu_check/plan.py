"""What `make gpu-check` measures, in order: ../shared/GPU-CHECKS.md as parts of commands, each
part and each command with its time box and a predicted time.

Every command is one of ours (harness.py run of a suite beside this file, harness.py estimate,
the optimizer micro-benchmark), so each cell lands as a record the report reads, and a run that
fails or runs out of memory is recorded as that cell's result while the part goes on.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from methods import METHODS
from suites.load import load_suite
from workloads.sizes import model_config

HERE = Path(__file__).parent
BUDGET_S = 480
"""The whole check's wall-clock budget on one H100-class GPU (the issue's eight minutes)."""
HARNESS = (sys.executable, "harness.py")
TRACED_SIZES = ("60m", "130m", "350m", "1b")
TRACED_SEQS = (256, 2048)
TRACED_METHODS = ("full", "adam8bit", "lora", "galore", "galore8bit", "galore8bit_layerwise")
TRACE_JOBS = 8
"""Traces at once on the GPU host's CPUs (16 cores on the machines lent here)."""

# Predictions, for the plan and for sizing the boxes; rough by design, stated so they can be
# checked against the log: a run's worker start-up, random initialisation on the host at
# about 4e8 parameters per second, then steps at 30% of an H100's BF16 peak; a trace on one
# core at about 1.2 s per billion parameters per step, plus start-up.
RUN_START_S = 3.0
INIT_PARAMETERS_PER_S = 4e8
STEP_FLOPS_PER_S = 0.3 * 989e12
TRACE_S_PER_BILLION_PER_STEP = 1.2
COMMAND_START_S = 8.0
"""One harness invocation: interpreter, torch, transformers and the methods' packages imported."""


@dataclass(frozen=True)
class Command:
    what: str
    """One line for the plan and the log."""
    argv: tuple[str, ...]
    results: str | None
    """The results file (in the output folder) it appends records to; None when it writes none."""
    cells: tuple[str, ...]
    """What it measures, one line each (a run's label and shape)."""
    time_box_s: int
    predicted_s: float


@dataclass(frozen=True)
class Part:
    number: int
    title: str
    time_box_s: int
    """Its commands share it; a command is cut at what is left of it."""
    commands: tuple[Command, ...]
    min_gpus: int = 1
    """With fewer GPUs the part is skipped and its time box goes to the next part."""

    @property
    def predicted_s(self) -> float:
        return sum(command.predicted_s for command in self.commands)


def _parameters(size: str) -> float:
    config = model_config("llama", size)
    hidden, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    return layers * (4 * hidden * hidden + 3 * hidden * config["intermediate_size"]) + 2 * vocab * hidden


def _run_seconds(spec) -> float:
    parameters = _parameters(spec.size)
    tokens = spec.batch_size * spec.seq_len * spec.steps
    return RUN_START_S + parameters / INIT_PARAMETERS_PER_S + 6 * parameters * tokens / STEP_FLOPS_PER_S


def _suite_command(what: str, suite: Path, results: str, run_timeout_s: int, time_box_s: int, out: Path) -> Command:
    runs = load_suite(suite).runs
    cells = tuple(f"{run.label} llama-{run.spec.size} batch {run.spec.batch_size} x {run.spec.seq_len}, "
                  f"{run.spec.steps} steps" + (f", {run.spec.nproc} ranks" if run.spec.nproc > 1 else "")
                  for run in runs)
    argv = (*HARNESS, "run", str(suite), "--results", str(out / results), "--run-timeout", str(run_timeout_s),
            "--no-progress")
    predicted = COMMAND_START_S + sum(min(_run_seconds(run.spec), run_timeout_s) for run in runs)
    return Command(what, argv, results, cells, time_box_s, predicted)


def _traced_command(seq: int, out: Path) -> Command:
    cells = tuple(f"{method} llama-{size} batch 1 x {seq} (traced)" for size in TRACED_SIZES for method in TRACED_METHODS)
    argv = (*HARNESS, "estimate", "--grid", "--sizes", ",".join(TRACED_SIZES),
            *(arg for method in TRACED_METHODS for arg in ("--method", method)), "--batch", "1", "--seq", str(seq),
            "--dtype", "bfloat16", "--data", "corpus=markov", "--data", "vocab=4096", "--jobs", str(TRACE_JOBS),
            "--records", str(out / "traced.jsonl"), "--suite", f"gpu_check_traced_seq{seq}")
    trace_s = sum(TRACE_S_PER_BILLION_PER_STEP * 2 * _parameters(size) / 1e9 * (seq / 256) ** 0.5
                  for size in TRACED_SIZES for _ in TRACED_METHODS)
    return Command(f"traced estimates, seq {seq}", argv, "traced.jsonl", cells, 60,
                   COMMAND_START_S + trace_s / TRACE_JOBS)


def every_method_suite(out: Path) -> Path:
    """Part 6's suite, written from the registry so that no registered method escapes it: each
    method's CUDA path (its package's kernels included) on LLaMA 60M for three steps; part 1's
    methods have had theirs."""
    methods = "\n".join(f'[[methods]]\nname = "{name}"\n' for name in METHODS if name not in TRACED_METHODS)
    path = out / "every_method_60m.toml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""# Written by make gpu-check from the method registry (benchmarks/gpu_check/plan.py).
name = "gpu_check_every_method"
description = "make gpu-check part 6: every registered method's CUDA path, LLaMA 60M, BF16, batch 1 x 256"
seeds = [0]

[defaults]
steps = 3
batch_size = 1
seq_len = 256
dtype = "bfloat16"
lr = 1e-3
timing_warmup_steps = 2
eval_batches = 0
device = "cuda"
data = {{ corpus = "markov", vocab = 4096 }}

[[workloads]]
name = "llama"
size = "60m"

{methods}""")
    return path


def gpu_check_plan(out: Path) -> list[Part]:
    """The parts in the order they run; `out` is where records and the report go."""
    bench = (sys.executable, "-m", "benchmarks.galore_optim", "--size", "60m", "--device", "cuda")
    return [
        Part(1, "the traced estimate against the device", 250, (
            _traced_command(256, out),
            _suite_command("real steps, seq 256", HERE / "traced_vs_device_seq256.toml", "device.jsonl", 30, 120, out),
            _traced_command(2048, out),
            _suite_command("real steps, seq 2048", HERE / "traced_vs_device_seq2048.toml", "device.jsonl", 30, 120, out),
        )),
        Part(2, "bench-optim at 60M: our GaLore and 8-bit GaLore step against galore-torch's", 30, (
            Command("make bench-optim BENCH_SIZE=60m on CUDA", bench, None,
                    ("ours galore", "ours galore8bit", "galore-torch GaLoreAdamW", "galore-torch GaLoreAdamW8bit"),
                    30, COMMAND_START_S + 10),
        )),
        Part(3, "the paper's Table 11 setting: 1B, batch 1 x 256, BF16", 45, (
            _suite_command("Table 11 runs", HERE / "table11.toml", "table11.jsonl", 20, 45, out),
        )),
        Part(4, "7B 8-bit GaLore layer-wise, batch 1 x 256: measured beside traced", 70, (
            Command("traced estimate at 7B", (*HARNESS, "estimate", "--size", "7b", "--method", "galore8bit_layerwise",
                                              "--option", "rank=1024", "--option", "update_proj_gap=500",
                                              "--batch", "1", "--seq", "256", "--dtype", "bfloat16",
                                              "--data", "corpus=markov", "--data", "vocab=4096",
                                              "--records", str(out / "traced.jsonl"), "--suite", "gpu_check_traced_7b"),
                    "traced.jsonl", ("galore8bit_layerwise llama-7b batch 1 x 256 (traced)",), 30,
                    COMMAND_START_S + TRACE_S_PER_BILLION_PER_STEP * 2 * _parameters("7b") / 1e9),
            _suite_command("7B run", HERE / "galore8bit_layerwise_7b.toml", "7b.jsonl", 40, 40, out),
        )),
        Part(5, "DDP and FSDP2 on NCCL, 2 ranks", 30, (
            _suite_command("NCCL runs", HERE / "nccl_two_ranks.toml", "nccl.jsonl", 20, 30, out),
        ), min_gpus=2),
        Part(6, "every other registered method's CUDA path at 60M", 55, (
            _suite_command("every other method", every_method_suite(out), "every_method.jsonl", 15, 85, out),
        )),
    ]


def format_plan(parts: list[Part], gpus: int | None) -> str:
    """Every part, command and cell with its time box and predicted time; gpus None: not known
    (plan-only on a host without CUDA), so a part needing several GPUs is listed as conditional."""
    lines = [f"make gpu-check: {len(parts)} parts, budget {BUDGET_S} s; time boxes in [], predictions in ()"]
    for part in parts:
        condition = ""
        if part.min_gpus > 1:
            skipped = f"when skipped, part {part.number + 1} takes its {part.time_box_s} s"
            condition = (f"  (only with {part.min_gpus}+ GPUs; {skipped})" if gpus is None
                         else "" if gpus >= part.min_gpus else f"  (skipped: {gpus} GPU; {skipped})")
        lines.append(f"part {part.number}: {part.title}  [{part.time_box_s} s] ({part.predicted_s:.0f} s){condition}")
        for command in part.commands:
            lines.append(f"  {command.what}  [{command.time_box_s} s] ({command.predicted_s:.0f} s)")
            lines += [f"    - {cell}" for cell in command.cells]
    boxes = sum(part.time_box_s for part in parts)
    one_gpu = sum(part.predicted_s for part in parts if part.min_gpus == 1)
    lines.append(f"time boxes: {boxes} s in all; predicted {one_gpu:.0f} s on one GPU, "
                 f"{sum(part.predicted_s for part in parts):.0f} s with two")
    return "\n".join(lines)
