"""The command line: what each command prints, and one clear line for bad input."""

import json
import subprocess
import sys

import pytest
import torch

from core.options import option_fields
from harness import main
from methods import METHODS
from results.schema import Environment
from suites.load import load_suite
from tests.process_events import HANG_GUARD_S
from workloads import WORKLOADS


def harness(*args):
    return subprocess.run([sys.executable, "harness.py", *args], capture_output=True, text=True, timeout=HANG_GUARD_S)


def test_list_shows_every_method_and_workload_with_its_options(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for registry in (METHODS, WORKLOADS):
        for name, entry in registry.items():
            line = next(line for line in lines if line.split()[:1] == [name])
            options = entry.options if registry is METHODS else entry.data_options
            assert all(field in line for field in option_fields(options)), line
    assert any(line.split()[:2] == ["suites/smoke.toml", "30"] for line in lines)


def test_env_prints_the_environment_record(capsys):
    assert main(["env", "--device", "cpu"]) == 0
    printed = Environment(**json.loads(capsys.readouterr().out))
    assert printed.packages["torch"] == torch.__version__ and printed.device_type == "cpu"


@pytest.mark.slow
def test_no_command_prints_the_bitsandbytes_start_up_warning():
    result = harness("run", "suites/smoke.toml", "--dry-run")
    assert result.returncode == 0 and result.stderr == ""


@pytest.mark.slow
def test_bad_suite_stops_before_any_run_with_one_line(write_suite, tmp_path):
    path = write_suite('[[workloads]]\nname = "llama"\nsize = "tiny"\ndata = { corpsu = "c4" }\n[[methods]]\nname = "full"\n')
    result = harness("run", str(path), "--results", str(tmp_path / "r.jsonl"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {path}: workloads[0].data.corpsu is not a known option; accepted: corpus, path, validation_files, "
        "validation_fraction, any_extension, tokenizer, pack, eval_tokens, vocab, branching, chain_seed (workload llama)"
    ]
    assert not (tmp_path / "r.jsonl").exists()


def test_dry_run_prints_each_planned_run_id(capsys):
    assert main(["run", "suites/smoke.toml", "--dry-run"]) == 0
    printed = [line.split()[:2] for line in capsys.readouterr().out.strip().splitlines()]
    assert printed == [[run.spec.run_id, run.label] for run in load_suite("suites/smoke.toml").runs]


def test_estimate_refuses_bad_options_with_one_line(capsys):
    assert main(["estimate", "--size", "tiny", "--method", "galore", "--option", "rank=big"]) == 2
    assert main(["estimate", "--size", "tiny", "--workload", "roberta_glue", "--data", "task=cola2"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: rank = 'big' must be an integer or none",
        "error: data.task 'cola2' is not known; accepted: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, "
        "synthetic-classification, synthetic-regression",
    ]


def test_estimate_refuses_what_a_run_refuses_with_one_line(capsys):
    """estimate builds its specs as a suite does: the spec checks its fields, preflight the method."""
    assert main(["estimate", "--size", "7b", "--seq", "256", "--method", "all", "--grad-accum", "0"]) == 2
    assert main(["estimate", "--size", "tiny", "--seq", "32", "--method", "galore", "--option", "rank=100"]) == 2
    assert main(["estimate", "--size", "tiny", "--seq", "32", "--method", "full_layerwise", "--dtype", "float32",
                 "--batch", "0"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: grad_accum = 0 is out of range; accepted: an integer >= 1",
        "error: options.rank = 100 exceeds the smaller side of a 64x64 weight it projects; accepted: 1..64",
        "error: batch_size = 0 is out of range; accepted: an integer >= 1",
    ]


def test_list_names_every_launcher_with_its_options(capsys):
    from launchers import LAUNCHERS

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, launcher in LAUNCHERS.items():
        line = next(line for line in lines if line.split()[:1] == [name])
        assert all(field in line for field in option_fields(launcher.options)), line


def test_then_runs_each_command_in_turn_and_exits_with_the_highest_status(capsys):
    assert main(["list", "--then", "list"]) == 0
    assert capsys.readouterr().out.count("methods:") == 2
    # A failing command does not keep the next from running; the status is the failure's.
    assert main(["check", "no-such-results.jsonl", "--baseline", "no-such-baseline.json", "--then", "list"]) == 2
    captured = capsys.readouterr()
    assert "no such results file" in captured.err and "methods:" in captured.out


def test_then_checks_every_commands_flags_before_the_first_runs(capsys):
    with pytest.raises(SystemExit):
        main(["list", "--then", "estimate", "--no-such-flag"])
    assert "methods:" not in capsys.readouterr().out
    assert main(["list", "--then"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --then stands between two commands, e.g. check A --baseline B "
                                               "--then check C --baseline D")
