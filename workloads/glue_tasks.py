"""The eight GLUE tasks of the GaLore paper's Table 4: their columns, labels and metrics
(glue_splits.py loads them, from the Hub or a local copy)."""

from dataclasses import dataclass

GLUE_HUB_NAME = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueTask:
    name: str
    text_columns: tuple[str, ...]
    """One column for single-sentence tasks, two for sentence pairs."""
    num_labels: int
    """Classes; 1 means a regression target (STS-B)."""
    metric: str
    """One of glue_metrics.METRIC_KINDS."""
    validation_split: str = "validation"
    further_validation_splits: tuple[str, ...] = ()
    """Evaluated too, their metrics recorded under the split's name ("validation_mismatched" gives
    "mismatched_accuracy"); the task's score stays that of validation_split, as the paper's tables have it."""


GLUE_TASKS = {
    "cola": GlueTask("cola", ("sentence",), 2, "matthews"),
    "sst2": GlueTask("sst2", ("sentence",), 2, "accuracy"),
    "mrpc": GlueTask("mrpc", ("sentence1", "sentence2"), 2, "f1_accuracy"),
    "qqp": GlueTask("qqp", ("question1", "question2"), 2, "f1_accuracy"),
    "stsb": GlueTask("stsb", ("sentence1", "sentence2"), 1, "pearson_spearman"),
    "mnli": GlueTask("mnli", ("premise", "hypothesis"), 3, "accuracy", "validation_matched", ("validation_mismatched",)),
    "qnli": GlueTask("qnli", ("question", "sentence"), 2, "accuracy"),
    "rte": GlueTask("rte", ("sentence1", "sentence2"), 2, "accuracy"),
}
