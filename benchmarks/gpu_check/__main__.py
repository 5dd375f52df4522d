"""make gpu-check: every figure a GPU can tell us in one call of at most eight minutes
(../shared/GPU-CHECKS.md as commands; plan.py says which, in what order, with what time boxes).

    python -m benchmarks.gpu_check               run it (needs CUDA); reports/out/gpu_check/
    python -m benchmarks.gpu_check --plan-only   print every cell with its time box, run nothing

Each command runs as its own process, cut at its time box (SIGTERM first, so a harness run
records the run it was in as killed, then SIGKILL); records are appended as each run ends and
summary.md is rewritten after every command, so a check cut off at any point keeps every
finished part. A folder left by an earlier check is moved aside, not overwritten.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from benchmarks.gpu_check.plan import BUDGET_S, Command, format_plan, gpu_check_plan
from benchmarks.gpu_check.summary import write_summary
from core.options import at_least

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "reports" / "out" / "gpu_check"
GRACE_S = 15
"""After SIGTERM, how long a cut command has to write its last record before SIGKILL."""
SHORTEST_BOX_S = 5
"""A command with less than this left of its time box is not started (said so in the summary)."""
REPORTED = ("traced.jsonl", "device.jsonl", "table11.jsonl", "7b.jsonl", "nccl.jsonl", "every_method.jsonl")


def _run(command: Command, time_box_s: float, log: Path) -> str:
    """Run one command under its time box, its output in `log`; what became of it, in words."""
    started = time.monotonic()
    with log.open("w") as output:
        process = subprocess.Popen(command.argv, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            code = process.wait(timeout=time_box_s)
            return f"exit {code} after {time.monotonic() - started:.0f} s"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            return f"cut at its time box ({time_box_s:.0f} s)"


def _set_aside(out: Path):
    if out.exists():
        out.rename(out.with_name(f"{out.name}.{datetime.now():%Y%m%d-%H%M%S}"))


def run_check(out: Path, gpus: int, budget_s: float) -> int:
    """Every part in order within the budget; 0 when every command ran to its end with exit 0."""
    _set_aside(out)
    (out / "logs").mkdir(parents=True)
    parts = gpu_check_plan(out)
    deadline = time.monotonic() + budget_s
    progress, clean, carried_s = [], True, 0
    for part in parts:
        if gpus < part.min_gpus:
            progress.append(f"- part {part.number}: skipped, it needs {part.min_gpus} GPUs and this host has {gpus}; "
                            f"its {part.time_box_s} s go to the next part")
            carried_s += part.time_box_s
            continue
        part_deadline = min(time.monotonic() + part.time_box_s + carried_s, deadline)
        carried_s = 0
        for index, command in enumerate(part.commands, 1):
            box = min(command.time_box_s, part_deadline - time.monotonic())
            if box < SHORTEST_BOX_S:
                progress.append(f"- part {part.number}, {command.what}: not started, its part's time box is spent")
                clean = False
                continue
            print(f"part {part.number}: {command.what} [{box:.0f} s]", flush=True)
            outcome = _run(command, box, out / "logs" / f"part{part.number}-{index}.log")
            clean &= outcome.startswith("exit 0 ")
            progress.append(f"- part {part.number}, {command.what}: {outcome}")
            write_summary(out, progress)
    for results in REPORTED:
        if (out / results).exists():
            subprocess.run([sys.executable, "harness.py", "report", str(out / results), "--out",
                            str(out / Path(results).stem)], cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    print(f"summary: {write_summary(out, progress)}")
    return 0 if clean else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan-only", action="store_true", help="print every cell with its time box; run nothing")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--budget-s", type=at_least(60), default=BUDGET_S,
                        help=f"wall-clock budget in seconds (default {BUDGET_S}; at least 60)")
    args = parser.parse_args(argv)
    import torch

    gpus = torch.cuda.device_count()
    if args.plan_only:
        with tempfile.TemporaryDirectory() as scratch:
            print(format_plan(gpu_check_plan(Path(scratch)), gpus or None))
        return 0
    if not gpus:
        print("error: make gpu-check needs a CUDA device and torch sees none here; "
              "make gpu-check DRY=1 prints what it would measure", file=sys.stderr)
        return 2
    return run_check(args.out, gpus, args.budget_s)


if __name__ == "__main__":
    sys.exit(main())
