"""The report's figure columns, each declared once: where in the record it is read, its heading,
unit, format and which of the report's tables shows it. A new metric is one meter change plus
one line here."""

from dataclasses import dataclass, fields

from core.units import MIB
from results.schema import MEMORY_CATEGORIES, TASK_METRIC_NAMES, Memory, Metrics, Record

TABLES = ("memory", "breakdown", "speed", "quality")
"""The summary's tables, in the order the report shows them (split so each fits a laptop screen)."""


@dataclass(frozen=True)
class Column:
    key: str
    """Path of the figure in a Record, e.g. "memory.tracker_peak_bytes"; a third part indexes a
    dict field, e.g. "memory.tracker_at_peak_bytes.gradients"."""
    heading: str
    """What the table calls it."""
    unit: str
    """The unit shown after the heading ("" for none)."""
    scale: float = 1.0
    """The record's value is divided by this (bytes / MIB -> MiB)."""
    number_format: str = ".4g"
    """Format of the averaged figure in the tables."""
    cuda_only: bool = False
    """Only CUDA runs have it (CPU records leave it None)."""
    table: str = "quality"
    """Which of TABLES shows it."""
    delta: bool = False
    """The table also shows its change against the baseline method, in percent."""

    @property
    def title(self) -> str:
        return f"{self.heading} ({self.unit})" if self.unit else self.heading

    def value(self, record: Record):
        """The figure in the record (in the record's unit), or None."""
        part, name, *item = self.key.split(".")
        value = getattr(getattr(record, part), name)
        return (value or {}).get(item[0]) if item else value


def _breakdown_column(category: str) -> Column:
    return Column(f"memory.tracker_at_peak_bytes.{category}", category.replace("_", " "), "MiB", scale=MIB,
                  table="breakdown")


TASK_METRIC_HEADINGS = {"accuracy": "accuracy", "f1": "F1", "matthews_correlation": "Matthews corr.",
                        "pearson": "Pearson", "spearman": "Spearman", "mismatched_accuracy": "mismatched accuracy"}
"""How the tables call each of TASK_METRIC_NAMES; each task fills its own, and a column no row fills is left out."""


COLUMNS = (
    Column("memory.tracker_peak_bytes", "tracked peak", "MiB", scale=MIB, table="memory", delta=True),
    *(_breakdown_column(category) for category in MEMORY_CATEGORIES),
    Column("memory.weights_and_state_bytes", "weights + optimizer state", "MiB", scale=MIB, table="memory"),
    Column("memory.cuda_max_allocated_bytes", "CUDA max allocated", "MiB", scale=MIB, cuda_only=True, table="memory"),
    Column("memory.cuda_max_reserved_bytes", "CUDA max reserved", "MiB", scale=MIB, cuda_only=True, table="memory"),
    Column("memory.nvml_process_bytes", "NVML process", "MiB", scale=MIB, cuda_only=True, table="memory"),
    Column("memory.process_peak_rss_bytes", "process peak RSS", "MiB", scale=MIB, table="memory"),
    Column("metrics.tokens_per_s", "tokens/s", "", number_format=".0f", table="speed", delta=True),
    Column("metrics.step_time_p50_s", "step p50", "ms", scale=1e-3, table="speed"),
    Column("metrics.step_time_p90_s", "step p90", "ms", scale=1e-3, table="speed"),
    Column("metrics.final_loss", "final loss", "", delta=True),
    Column("metrics.eval_loss", "eval loss", ""),
    Column("metrics.final_loss_above_floor", "loss above floor", ""),
    Column("metrics.perplexity", "perplexity", ""),
    Column("metrics.task_score", "task score", "", delta=True),
    *(Column(f"metrics.task_metrics.{name}", TASK_METRIC_HEADINGS[name], "") for name in TASK_METRIC_NAMES),
)


def _check_keys():
    # A renamed record field fails here, at import, rather than leaving an empty column.
    parts = {"metrics": Metrics, "memory": Memory}
    for column in COLUMNS:
        part, name, *_ = column.key.split(".")
        names = {f.name for f in fields(parts[part])}
        if name not in names and not isinstance(getattr(parts[part], name, None), property):
            schema_class = parts[part].__name__
            raise KeyError(f"reports/columns.py: {column.key} is not a field of results/schema.py's {schema_class}")
        if column.table not in TABLES:
            raise KeyError(f"reports/columns.py: {column.key}: table {column.table!r} is not one of {TABLES}")


_check_keys()
