"""Launchers are an axis: each registers its name, typed options (a suite's [launcher.<name>]
table) and flags, and the harness runs any of them without knowing which. A launcher written
here, registered with one line, runs a suite through `harness.py run` unchanged."""

from dataclasses import dataclass, fields

import pytest

from harness import build_parser, main
from launchers import LAUNCHERS
from launchers.base import Flag, Launcher
from launchers.local.parent import run_one
from results.records import read_records

SUITE = """
    name = "inline"
    [defaults]
    steps = 2
    batch_size = 2
    seq_len = 16
    eval_batches = 1
    timing_warmup_steps = 1
    device = "cpu"
    [[workloads]]
    name = "llama"
    size = "tiny"
    [[methods]]
    name = "full"
    [[methods]]
    name = "lora"
    [launcher.inline]
    note = "from the suite"
"""


@dataclass(frozen=True)
class InlineOptions:
    note: str = "none"
    """Said on every run's line."""
    runs_at_most: int = 10
    """Runs it takes."""

    def __post_init__(self):
        if self.runs_at_most < 1:
            raise ValueError(f"runs_at_most = {self.runs_at_most} must be at least 1")


class InlineSession:
    """Each run through the local launcher's run_one, newest suite entry first."""

    started: list = []

    def __init__(self, options, results_path, settings):
        self.options, self.settings = options, settings
        InlineSession.started.append(options)

    def check(self, runs):
        if len(runs) > self.options.runs_at_most:
            raise ValueError(f"{len(runs)} runs: the inline launcher takes at most {self.options.runs_at_most}")

    def plan(self, pending):
        return f"{len(pending)} to run inline ({self.options.note})"

    def run(self, suite_name, pending, stops):
        from training.loop import train

        for planned in reversed(pending):
            yield planned, run_one(planned, suite_name, train, progress=False, waiting=stops.waiting), self.options.note


INLINE = Launcher("inline", "runs newest first (a test's launcher)", InlineOptions,
                  "tests.launchers.test_registry:InlineSession",
                  flags=(Flag("note", "inline-note", "said on every run's line"),))


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(LAUNCHERS, "inline", INLINE)
    InlineSession.started.clear()


@pytest.mark.parametrize("launcher", list(LAUNCHERS.values()), ids=list(LAUNCHERS))
def test_every_launcher_has_typed_defaults_and_flags_that_set_its_options(launcher):
    launcher.options()  # every option has a default
    names = {field.name for field in fields(launcher.options)}
    assert {flag.option for flag in launcher.flags} <= names
    flags = {action.dest for action in build_parser()._subparsers._group_actions[0].choices["run"]._actions}
    assert {f"{launcher.name}.{flag.option}" for flag in launcher.flags} <= flags


@pytest.mark.slow  # starts worker processes
def test_a_launcher_registered_with_one_line_runs_a_suite_through_the_harness(registered, write_suite, tmp_path,
                                                                               capsys):
    results = tmp_path / "r.jsonl"
    path = write_suite(SUITE)
    assert main(["run", str(path), "--results", str(results), "--launcher", "inline", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 to run inline (from the suite)" in out and "lora llama-tiny seed 0 (from the suite): ok" in out
    assert [record.label for record in read_records(results)] == ["lora", "full"]
    # The suite runner's resume and the flag over the suite's table, for any launcher alike.
    assert main(["run", str(path), "--results", str(results), "--launcher", "inline", "--inline-note", "again"]) == 0
    assert InlineSession.started[-1] == InlineOptions(note="again")
    assert "0 to run inline (again)" in capsys.readouterr().out


@pytest.mark.parametrize("table, flags, message", [
    ("runs_at_most = 0", [], "suite.toml: launcher.inline.runs_at_most = 0 must be at least 1"),
    ("runs_at_most = 1", [], "error: 2 runs: the inline launcher takes at most 1"),
    ("", ["--inline-note", "x", "--launcher", "local"], "error: --inline-note applies only with --launcher inline"),
])
def test_a_launchers_options_and_refusals_are_one_line_before_any_run(registered, write_suite, tmp_path, capsys, table,
                                                                       flags, message):
    results = tmp_path / "r.jsonl"
    path = write_suite(SUITE.replace('note = "from the suite"', table))
    launcher = [] if "--launcher" in flags else ["--launcher", "inline"]
    assert main(["run", str(path), "--results", str(results), *launcher, *flags]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and line.endswith(message.removeprefix("error: "))
    assert not results.exists()
