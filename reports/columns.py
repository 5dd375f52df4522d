"""The comparison table's figure columns, each declared once: where in the record it is read,
its heading, unit and format. A new metric is one meter change plus one line here."""

from dataclasses import dataclass, fields

from results.schema import Memory, Metrics, Record

MIB = 2**20


@dataclass(frozen=True)
class Column:
    key: str
    """Path of the figure in a Record, e.g. "memory.tracker_peak_bytes"."""
    heading: str
    """What the table calls it."""
    unit: str
    """The unit shown after the heading ("" for none)."""
    scale: float = 1.0
    """The record's value is divided by this (bytes / MIB -> MiB)."""
    number_format: str = ".4g"
    """Format of the averaged figure in report.md."""
    cuda_only: bool = False
    """Only CUDA runs have it (CPU records leave it None)."""

    @property
    def title(self) -> str:
        return f"{self.heading} ({self.unit})" if self.unit else self.heading

    def value(self, record: Record):
        """The figure in the record (in the record's unit), or None."""
        part, name = self.key.split(".")
        return getattr(getattr(record, part), name)


COLUMNS = (
    Column("metrics.final_loss", "final loss", ""),
    Column("metrics.eval_loss", "eval loss", ""),
    Column("metrics.final_loss_above_floor", "loss above floor", ""),
    Column("metrics.perplexity", "perplexity", ""),
    Column("metrics.task_score", "task score", ""),
    Column("metrics.tokens_per_s", "tokens/s", "", number_format=".0f"),
    Column("metrics.step_time_p50_s", "step p50", "ms", scale=1e-3),
    Column("memory.weights_and_state_bytes", "weights + optimizer state", "MiB", scale=MIB),
    Column("memory.optimizer_state_bytes", "optimizer state", "MiB", scale=MIB),
    Column("memory.tracker_peak_bytes", "tracked peak", "MiB", scale=MIB),
    Column("memory.cuda_max_allocated_bytes", "CUDA max allocated", "MiB", scale=MIB, cuda_only=True),
    Column("memory.process_peak_rss_bytes", "process peak RSS", "MiB", scale=MIB),
)


def _check_keys():
    # A renamed record field fails here, at import, rather than leaving an empty column.
    parts = {"metrics": Metrics, "memory": Memory}
    for column in COLUMNS:
        part, name = column.key.split(".")
        names = {f.name for f in fields(parts[part])}
        if name not in names and not isinstance(getattr(parts[part], name, None), property):
            schema_class = parts[part].__name__
            raise KeyError(f"reports/columns.py: {column.key} is not a field of results/schema.py's {schema_class}")


_check_keys()
