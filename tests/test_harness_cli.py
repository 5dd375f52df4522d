"""The command line: help for every command, listing, and one clear line for bad input."""

import subprocess
import sys

import pytest

from harness import main


def harness(*args):
    return subprocess.run([sys.executable, "harness.py", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["run", "report", "list", "env"])
def test_every_command_has_help(command):
    result = harness(command, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


def test_list_names_methods_workloads_and_suites(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("full", "adam8bit", "lora", "llama", "suites/smoke.toml"):
        assert name in out


def test_env_reports_versions_without_nvml(capsys):
    assert main(["env", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert '"torch": "2.13.0' in out and '"git_commit"' in out


def test_bad_suite_stops_before_any_run_with_one_line(write_suite, tmp_path):
    path = write_suite('[[workloads]]\nname = "llama"\nsize = "tiny"\n[[methods]]\nname = "sgd"\n')
    result = harness("run", str(path), "--results", str(tmp_path / "r.jsonl"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {path}: methods[0].name = 'sgd'")
    assert not (tmp_path / "r.jsonl").exists()


def test_dry_run_lists_the_smoke_runs(capsys):
    assert main(["run", "suites/smoke.toml", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 3 and all(len(line.split()[0]) == 16 for line in lines)
