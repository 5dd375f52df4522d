"""harness.py check: the CI memory gate against a baseline."""

import json

import pytest

from core.units import MIB
from harness import main
from methods import METHODS
from results.baseline import read_baseline
from results.records import append_record
from results.schema import MEMORY_CATEGORIES, Environment, Memory
from suites.load import load_suite
from tests.record_fixtures import make_record
from workloads import WORKLOADS

BREAKDOWN = {category: (index + 1) * MIB for index, category in enumerate(MEMORY_CATEGORIES)}
PACKAGES = {"torch": "2.13.0+cpu", "bitsandbytes": "0.50.2", "apollo-torch": "1.0.3", "submitit": "1.5.4"}
"""What the records' environment names: the gate watches each of them."""


def gated_record(run_id: str, label: str, breakdown: dict = BREAKDOWN, final_loss: float = 2.0):
    memory = Memory(tracker_peak_bytes=sum(breakdown.values()), tracker_peak_step=1, tracker_at_peak_bytes=breakdown,
                    tracker_at_step_end_bytes=breakdown, trainable_weight_bytes=MIB, frozen_weight_bytes=0,
                    optimizer_state_bytes=2 * MIB)
    record = make_record(run_id, label, final_loss=final_loss, memory=memory)
    record.environment = Environment(packages=dict(PACKAGES))
    return record


@pytest.fixture
def gate(tmp_path):
    """A baseline of two runs written with --update; returns a function that checks results."""
    baseline = tmp_path / "baseline.json"
    results = tmp_path / "baseline_runs.jsonl"
    append_record(results, gated_record("a", "full"))
    append_record(results, gated_record("b", "galore"))
    assert main(["check", str(results), "--baseline", str(baseline), "--update"]) == 0

    def check(*records, extra_args=()):
        now = tmp_path / "now.jsonl"
        now.unlink(missing_ok=True)
        for record in records:
            append_record(now, record)
        return main(["check", str(now), "--baseline", str(baseline), *extra_args])

    return check


def rows(out: str) -> dict[tuple[str, str], list[str]]:
    """(run, figure) -> the row's other cells, from the printed table."""
    table = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) >= 7 and cells[1].startswith("("):
            table[(f"{cells[0]} {cells[1]}", cells[2])] = cells[3:]
    return table


def test_a_category_that_rose_2_percent_fails_with_its_row_named(gate, capsys):
    risen = {**BREAKDOWN, "gradients": int(BREAKDOWN["gradients"] * 1.02)}
    assert gate(gated_record("a", "full"), gated_record("b", "galore", risen)) == 1
    table = rows(capsys.readouterr().out)
    assert table[("galore (llama-tiny)", "at_peak.gradients_bytes")] == ["3,145,728", "3,208,642", "+2.00", "REGRESSED"]
    assert table[("galore (llama-tiny)", "tracker_peak_bytes")][-1] == "same"  # +0.3% of the total: within 1%
    assert [key for key, cells in table.items() if cells[-1] == "REGRESSED"] == [
        ("galore (llama-tiny)", "at_peak.gradients_bytes"), ("galore (llama-tiny)", "at_step_end.gradients_bytes")
    ]


def test_a_category_that_fell_passes_as_an_improvement(gate, capsys):
    fallen = {**BREAKDOWN, "activations": BREAKDOWN["activations"] // 2}
    assert gate(gated_record("a", "full", fallen), gated_record("b", "galore")) == 0
    out = capsys.readouterr().out
    assert rows(out)[("full (llama-tiny)", "at_peak.activations_bytes")][-2:] == ["-50.00", "improved"]
    # Both activation figures and the peak fell; 2 runs x 16 figures in all.
    assert out.splitlines()[-1] == "29 same, 3 improved, 0 REGRESSED, 0 new, 0 missing"


def test_a_tolerance_lets_a_small_rise_pass(gate):
    risen = {**BREAKDOWN, "gradients": int(BREAKDOWN["gradients"] * 1.02)}
    assert gate(gated_record("a", "full"), gated_record("b", "galore", risen), extra_args=["--tolerance", "0.05"]) == 0


def test_a_loss_that_rose_beyond_its_tolerance_fails(gate, capsys):
    assert gate(gated_record("a", "full", final_loss=2.03), gated_record("b", "galore", final_loss=2.1)) == 1
    table = rows(capsys.readouterr().out)
    assert table[("full (llama-tiny)", "final_loss")][-1] == "same"
    assert table[("galore (llama-tiny)", "final_loss")] == ["2.0000", "2.1000", "+5.00", "REGRESSED"]


def test_a_missing_run_fails_and_an_extra_one_is_a_note(gate, capsys):
    assert gate(gated_record("a", "full"), gated_record("c", "lora")) == 1
    table = rows(capsys.readouterr().out)
    assert table[("galore (llama-tiny)", "run")][-1] == "missing"
    assert table[("lora (llama-tiny)", "run")][-1] == "new"
    assert gate(gated_record("a", "full"), gated_record("b", "galore"), gated_record("c", "lora")) == 0


def test_a_run_that_failed_now_fails_the_check(gate, capsys):
    failed = make_record("b", "galore", status="oom", error="OutOfMemoryError: 2 GiB")
    assert gate(gated_record("a", "full"), failed) == 1
    assert rows(capsys.readouterr().out)[("galore (llama-tiny)", "status")][-1] == "REGRESSED"


def test_update_round_trips_and_says_what_changed(gate, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    before = read_baseline(baseline)
    risen = {**BREAKDOWN, "other": BREAKDOWN["other"] + 1}
    assert gate(gated_record("a", "full"), gated_record("b", "galore", risen), extra_args=["--update"]) == 0
    out = capsys.readouterr().out
    changed = {figure for (_, figure) in rows(out)}
    assert changed == {"at_peak.other_bytes", "at_step_end.other_bytes", "tracker_peak_bytes"}
    after = read_baseline(baseline)
    assert after.runs[1].figures_bytes["at_peak.other_bytes"] == before.runs[1].figures_bytes["at_peak.other_bytes"] + 1
    assert after.runs[0] == before.runs[0]
    assert gate(gated_record("a", "full"), gated_record("b", "galore", risen)) == 0


def test_versions_that_differ_from_the_baselines_are_said_first(gate, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    values = json.loads(baseline.read_text())
    assert values["packages"] == dict(sorted(PACKAGES.items()))  # every package the records name
    values["packages"]["torch"] = "2.12.0"
    values["packages"]["apollo-torch"] = "1.0.2"  # a method's own package moves bytes too
    del values["packages"]["submitit"]
    baseline.write_text(json.dumps(values))
    assert gate(gated_record("a", "full"), gated_record("b", "galore")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:4] == [
        "note: versions differ, so bytes may move: apollo-torch 1.0.3 here, 1.0.2 in the baseline",
        "note: versions differ, so bytes may move: submitit 1.5.4 here, not recorded in the baseline",
        "note: versions differ, so bytes may move: torch 2.13.0+cpu here, 2.12.0 in the baseline",
    ]


@pytest.mark.parametrize("problem, expected", [
    ("no results", "error: {now}: no such results file"),
    ("no baseline", "error: {baseline}: no such baseline file (write one with --update)"),
    ("garbage baseline", "error: {baseline}: not a baseline file (JSONDecodeError: "),
    ("nothing in common", "error: {now}: no runs in common with {baseline}"),
    ("a tolerance that is a string", "error: {baseline}: tolerance = 'high'; accepted: a number in [0, 1)"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, problem, expected):
    now, baseline = tmp_path / "now.jsonl", tmp_path / "baseline.json"
    if problem != "no results":
        append_record(now, gated_record("z", "full"))
    if problem == "garbage baseline":
        baseline.write_text("{not json")
    if problem == "a tolerance that is a string":
        assert main(["check", str(now), "--baseline", str(baseline), "--update"]) == 0
        capsys.readouterr()
        baseline.write_text(baseline.read_text().replace('"tolerance": 0.01', '"tolerance": "high"'))
    if problem == "nothing in common":
        other = tmp_path / "other.jsonl"
        append_record(other, gated_record("a", "full"))
        assert main(["check", str(other), "--baseline", str(baseline), "--update"]) == 0
        capsys.readouterr()
    assert main(["check", str(now), "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(expected.format(now=now, baseline=baseline))


def test_the_ci_suite_and_its_baselines_cover_every_method_and_workload():
    """A new method or workload fails here until the gate covers it (make check-update)."""
    planned = {(run.spec.method, run.spec.workload) for run in load_suite("suites/ci_memory.toml").runs}
    # A CUDA-only method has no CPU run to gate, only its traced estimate (below).
    gated = [method for method in METHODS if not METHODS[method].cuda_only]
    assert planned == {(method, workload) for method in gated for workload in WORKLOADS}
    runs = read_baseline("results/baselines/ci_memory.json").runs
    assert {(run.run_id, run.label) for run in runs} == {
        (run.spec.run_id, run.label) for run in load_suite("suites/ci_memory.toml").runs
    }
    assert {run.label for run in read_baseline("results/baselines/ci_traced_7b.json").runs} == set(METHODS)


@pytest.mark.parametrize("flag, value", [("--tolerance", "nan"), ("--tolerance", "-1"), ("--tolerance", "1"),
                                         ("--loss-tolerance", "inf")])
def test_a_tolerance_outside_0_to_1_is_refused(gate, flag, value, capsys):
    """nan passed a +100% rise; -1 failed an improvement."""
    with pytest.raises(SystemExit) as refused:
        gate(gated_record("a", "full"), gated_record("b", "galore"), extra_args=(flag, value))
    assert refused.value.code == 2
    assert f"argument {flag}: {value} is out of range; accepted: [0, 1)" in capsys.readouterr().err
