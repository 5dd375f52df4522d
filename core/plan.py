"""A suite's plan: the runs it expands to, as plain data that launchers run without knowing
which file or grid they came from (suites/load.py builds it)."""

from dataclasses import dataclass, field

from core.spec import RunSpec


@dataclass(frozen=True)
class PlannedRun:
    label: str
    """How reports name the method row (the method name unless the suite gives a label)."""
    spec: RunSpec

    @property
    def description(self) -> str:
        """The run as progress lines name it: "galore llama-60m seed 0"."""
        return f"{self.label} {self.spec.workload}-{self.spec.size} seed {self.spec.seed}"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    runs: list[PlannedRun]
    launcher_options: dict[str, object] = field(default_factory=dict)
    """Launcher name -> its typed options, from the suite's [launcher.<name>] table (launchers/);
    a launcher the suite says nothing of runs with its defaults."""
