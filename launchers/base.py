"""The launcher contract: how the runs of a suite are started (on this machine, as Slurm jobs,
...), with the options a suite's [launcher.<name>] table and the command line give it.

A launcher is a folder of launchers/ holding its parent side (what the harness runs: start the
runs, collect their records) and its child side (what runs where the run runs), its Launcher in
the folder's __init__.py, plus one line in launchers/__init__.py. The harness calls it without
knowing which one it is:

    session = launcher.start(options, results_path, settings)
    session.check(runs)                      # what this launcher cannot start, before any run
    run_suite(session, suite, results_path)  # launchers/suite_runner.py: lock, resume, records

A session's run(suite_name, pending, stops) yields (planned run, record, where it ran) as each
run ends; the suite runner appends each record exactly once and says how the run ended.
"""

import argparse
import signal
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Protocol

from core.options import OptionError, parse_options
from core.plan import PlannedRun
from core.targets import load
from results.schema import Record


class RunStopped(Exception):
    """SIGINT or SIGTERM (or Slurm's time-limit warning) reached a process waiting on a run;
    `record` is that run's record, once made."""

    def __init__(self, signal_number: int, record: Record | None = None):
        super().__init__(f"stopped by {signal.Signals(signal_number).name}")
        self.signal_number = signal_number
        self.record = record


class SuiteStopped(Exception):
    """The harness was stopped; the message says what became of the runs in flight, and the
    harness exits 128 + signal_number."""

    def __init__(self, signal_number: int, message: str):
        super().__init__(message)
        self.signal_number = signal_number


@dataclass(frozen=True)
class RunSettings:
    """How `harness.py run` asks every launcher to run: the same for all of them."""

    progress: bool = True
    """Per-step progress bars."""
    timeout_s: float | None = None
    """Stop a run after this long and record it timeout (None: no limit)."""
    retry_timeouts: bool = False
    """Run again the runs recorded as timeout."""
    train_function: Callable | None = None
    """What trains a spec (None: training.loop.train); tests put a stand-in here."""


@dataclass(frozen=True)
class Flag:
    """A `harness.py run` flag that sets one of a launcher's options over the suite's table."""

    option: str
    """The options field it sets."""
    name: str
    """The flag, without the leading dashes, e.g. "time-limit"."""
    help: str
    parse: Callable[[str], object] = str
    """Turns the flag's text into the option's value, or raises argparse.ArgumentTypeError."""
    metavar: str | None = None


class Session(Protocol):
    """A launcher's parent side for one invocation of `harness.py run`."""

    def check(self, runs: list[PlannedRun]):
        """ValueError, in one line, for runs this launcher cannot start (before any runs)."""

    def plan(self, pending: list[PlannedRun]) -> str:
        """What it will do with the pending runs, for the suite's first line ("3 to run"); asked
        once, before run() gets the same runs."""

    def run(self, suite_name: str, pending: list[PlannedRun], stops) -> Iterator[tuple[PlannedRun, Record, str]]:
        """Start the pending runs and yield (run, record, where it ran) as each ends. Stops
        (launchers/suite_runner.StopSignals) say when the harness was told to stop: raise
        RunStopped with the record of the run it cut short, or SuiteStopped."""


@dataclass(frozen=True)
class Launcher:
    """A registered launcher: its name, its typed options and flags, and its parent side."""

    name: str
    """The name `harness.py run --launcher` and a suite's [launcher.<name>] table use."""
    summary: str
    """One line for `harness.py run --help` and `harness.py list`."""
    options: type
    """Frozen dataclass of its options, every field with a default and a docstring."""
    session: str
    """"module:Class" of its parent side: Class(options, results_path, settings) is the Session
    that runs a suite's runs (named, not imported, so that listing launchers stays light)."""
    flags: tuple[Flag, ...] = ()
    """Its `harness.py run` flags, each setting one option."""
    packages: tuple[str, ...] = ()
    """The distributions it imports (pip names): records name their versions."""

    def start(self, options, results_path, settings: RunSettings) -> Session:
        """Its parent side for one invocation, with its options."""
        return load(self.session)(options, results_path, settings)

    def parse_table(self, table: dict, prefix: str):
        """Its options from a suite's table; an OptionError names the key (after `prefix`)."""
        return parse_options(self.options, table, prefix)

    def add_flags(self, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(f"--launcher {self.name}")
        for flag in self.flags:
            group.add_argument(f"--{flag.name}", dest=f"{self.name}.{flag.option}", type=flag.parse,
                               metavar=flag.metavar, help=flag.help)

    def given_flags(self, args: argparse.Namespace) -> dict:
        """option -> value of each of its flags given on the command line."""
        values = {flag.option: getattr(args, f"{self.name}.{flag.option}") for flag in self.flags}
        return {option: value for option, value in values.items() if value is not None}

    def options_from(self, suite_options, args: argparse.Namespace):
        """Its options: the suite's table (or the defaults), with the command line's flags over it."""
        options = self.options() if suite_options is None else suite_options
        try:
            return replace(options, **self.given_flags(args))
        except ValueError as error:
            raise OptionError(f"--launcher {self.name}: {error}") from None

