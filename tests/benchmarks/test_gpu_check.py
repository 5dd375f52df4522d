"""make gpu-check without a GPU: its plan-only mode lists every cell within the budget, its
suites load, its runner cuts a command at its time box and goes on, and its summary computes
the traced-against-device ratio from records."""

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.gpu_check import __main__ as gpu_check
from benchmarks.gpu_check.plan import BUDGET_S, TRACED_METHODS, TRACED_SIZES, Command, Part, gpu_check_plan
from benchmarks.gpu_check.summary import traced_against_device
from core.units import GIB
from methods import METHODS
from results.records import append_record
from results.schema import Memory
from suites.load import load_suite
from tests.record_fixtures import make_record, markdown_rows

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_make_gpu_check_dry_lists_every_cell_of_every_part_within_the_budget(capsys):
    # make's recipe, read with -n; the plan it prints, made here (a second interpreter would
    # spend its seconds importing what this one has).
    recipe = subprocess.run(["make", "-n", "-s", "gpu-check", "DRY=1"], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True).stdout.strip().splitlines()[-1]
    assert recipe.split()[1:] == ["-m", "benchmarks.gpu_check", "--plan-only"]
    assert gpu_check.main(["--plan-only"]) == 0
    plan = capsys.readouterr().out
    for size in TRACED_SIZES:
        for method in TRACED_METHODS:
            for seq in (256, 2048):
                assert f"- {method} llama-{size} batch 1 x {seq}, 3 steps" in plan
                assert f"- {method} llama-{size} batch 1 x {seq} (traced)" in plan
    for method in set(METHODS) - set(TRACED_METHODS):  # part 6: every other registered method's CUDA path
        assert f"- {method} llama-60m batch 1 x 256, 3 steps" in plan
    for part in range(1, 7):
        assert f"part {part}: " in plan
    assert "(only with 2+ GPUs; when skipped, part 6 takes its 30 s)" in plan and "- full fsdp2 x2 llama-60m batch 8 x 256, 10 steps, 2 ranks" in plan
    boxes = int(plan.splitlines()[-1].split("time boxes: ")[1].split(" s")[0])
    assert boxes <= BUDGET_S == 480


def test_every_part_boxes_its_commands_and_the_suites_run_on_cuda(tmp_path):
    parts = gpu_check_plan(tmp_path)
    assert sum(part.time_box_s for part in parts) <= BUDGET_S
    for before, part in zip([None, *parts], parts):
        carried_in = before.time_box_s if before and before.min_gpus > 1 else 0  # a skipped part's box
        assert all(command.time_box_s <= part.time_box_s + carried_in for command in part.commands), part.title
    suites = [Path(arg) for part in parts for command in part.commands for arg in command.argv if arg.endswith(".toml")]
    assert len(suites) == 6
    for suite in suites:
        assert {run.spec.device for run in load_suite(suite).runs} == {"cuda"}, suite


def test_without_cuda_the_check_refuses_in_one_line(capsys):
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a CUDA device" in err and "DRY=1" in err


def test_a_budget_below_a_minute_is_refused(capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--budget-s", "30"])
    assert "30 must be at least 60" in capsys.readouterr().err


def sleeper(seconds: int, box_s: int) -> Command:
    # sleep(1), not an interpreter: "sleep 0" ends at once however loaded the machine.
    return Command(f"sleep {seconds}", ("sleep", str(seconds)), None, (), box_s, seconds)


def test_a_command_past_its_time_box_is_cut_and_the_check_goes_on(tmp_path, monkeypatch):
    parts = [Part(1, "slow", 9, (sleeper(60, 5), sleeper(0, 5))), Part(2, "next", 10, (sleeper(0, 10),)),
             Part(3, "two GPUs", 10, (sleeper(0, 10),), min_gpus=2)]
    monkeypatch.setattr(gpu_check, "gpu_check_plan", lambda out: parts)
    (tmp_path / "gpu_check").mkdir()
    (tmp_path / "gpu_check" / "earlier.txt").write_text("kept")
    assert gpu_check.run_check(tmp_path / "gpu_check", gpus=1, budget_s=120) == 1
    summary = (tmp_path / "gpu_check" / "summary.md").read_text()
    assert "- part 1, sleep 60: cut at its time box (5 s)" in summary
    # The part's 9 s box: 5 went to the cut command, so the second would start with under 4 left,
    # fewer than the 5 a command needs (SHORTEST_BOX_S); a slower machine leaves fewer still.
    assert "- part 1, sleep 0: not started, its part's time box is spent" in summary
    assert "- part 2, sleep 0: exit 0" in summary
    assert "- part 3: skipped, it needs 2 GPUs and this host has 1; its 10 s go to the next part" in summary
    [earlier] = tmp_path.glob("gpu_check.*/earlier.txt")  # the earlier check's folder, set aside
    assert earlier.read_text() == "kept"


def test_the_summary_sets_max_allocated_beside_the_traced_peak(tmp_path):
    traced = make_record("t", "full", memory=Memory(tracker_peak_bytes=4 * GIB))
    device = make_record("d", "full", memory=Memory(tracker_peak_bytes=4 * GIB + 512, cuda_max_allocated_bytes=5 * GIB))
    other = make_record("o", "lora", memory=Memory(cuda_max_allocated_bytes=GIB))
    append_record(tmp_path / "traced.jsonl", traced)
    for record in (device, other):
        append_record(tmp_path / "device.jsonl", replace(record, spec=replace(record.spec, device="cuda")))
    lines = traced_against_device(tmp_path)
    rows = markdown_rows("\n".join(lines), "method")
    assert [(row["method"], row["allocated / traced"]) for row in rows] == [("full", "1.250"), ("lora", "–")]
    assert rows[0]["traced GiB"] == "4.00" and rows[0]["max allocated GiB"] == "5.00"
    assert lines[-1] == "\nWorst cell: full llama-tiny seq 64, allocated / traced 1.250 (goal: within 5%)."
