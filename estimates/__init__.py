"""Memory without running: traced training steps on fake tensors (traced.py), by structure from a
few depths (by_depth.py), the largest batch
under a budget (fit.py), every method at every size (grid.py), the paper's analytic table and
7B figures (paper_table.py, paper_7b.py), the successors at 7B (successors_7b.py).

MODES is what `harness.py estimate` offers, one flag each; a mode names its implementation
("module:function"), imported only when it runs. A mode that takes specs is called with the
checked specs and an EstimateRequest and returns the exit status; one that takes none returns
its report's text.
"""

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class EstimateRequest:
    """What the estimate command asked for besides the specs."""

    records: Path | None = None
    """Append one estimate record per answer to this results file (None: print only)."""
    suite: str = "estimate"
    """The suite name the records carry."""
    jobs: int = 1
    """Searches or traces at once, one process each."""
    values: list[str] = field(default_factory=list)
    """The mode's own values as given (fit: its budgets, "24GB")."""
    full_trace: bool = False
    """Trace the whole model (traced and fit modes), not by structure (estimates/by_depth.py)."""


@dataclass(frozen=True)
class EstimateMode:
    name: str
    """Its flag, without the dashes ("traced" is the default, without a flag)."""
    help: str
    target: str
    """"module:function" that runs it."""
    takes_specs: bool = True
    """Whether it estimates the command's specs (methods x sizes x checkpointing), or prints a
    fixed report."""
    default_sizes: tuple[str, ...] = ()
    """The sizes it estimates when --sizes is not given (otherwise --size)."""
    metavar: str | None = None
    """For a mode given with a value, repeatable (fit's budgets): the value's name."""
    default: bool = False
    """The mode without a flag of its own."""


MODES = {
    mode.name: mode
    for mode in (
        EstimateMode("traced", "a traced estimate of each method", "estimates.by_depth:estimate_by_structure",
                     default=True),
        EstimateMode("fit", "the largest micro-batch per method that fits this memory, e.g. 24GB or 22.5GiB; "
                     "repeatable (one search serves every budget)", "estimates.fit:estimate_fit", metavar="BUDGET"),
        EstimateMode("grid", "a traced estimate of every --method at every --sizes, written to --records",
                     "estimates.grid:estimate_grid", default_sizes=("60m", "130m", "350m", "1b", "7b")),
        EstimateMode("paper-table", "GaLore Tables 2 and 6 beside our analytic figures",
                     "estimates.paper_table:paper_table_report", takes_specs=False),
        EstimateMode("paper-7b", "the paper's 7B introduction figures beside ours", "estimates.paper_7b:paper_7b_report",
                     takes_specs=False),
        EstimateMode("successors-7b", "GaLore's successors traced at 7B (seq 256) beside GaLore, each paper's claim "
                     "and the ratio", "estimates.successors_7b:successors_7b_report", takes_specs=False),
    )
}
