"""The eight GLUE tasks of the GaLore paper's Table 4, loaded from the Hub or local files.

Local files follow the Hub's layout of `nyu-mll/glue`: DIR/<task>/<split>-NNNNN-of-NNNNN.parquet
(JSON lines with the same columns work too), where MNLI's validation split is "validation_matched".
"""

import glob
import os
from dataclasses import dataclass

import datasets

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


GLUE_TASKS = {
    "cola": GlueTask("cola", ("sentence",), 2, "matthews"),
    "sst2": GlueTask("sst2", ("sentence",), 2, "accuracy"),
    "mrpc": GlueTask("mrpc", ("sentence1", "sentence2"), 2, "f1_accuracy"),
    "qqp": GlueTask("qqp", ("question1", "question2"), 2, "f1_accuracy"),
    "stsb": GlueTask("stsb", ("sentence1", "sentence2"), 1, "pearson_spearman"),
    "mnli": GlueTask("mnli", ("premise", "hypothesis"), 3, "accuracy", "validation_matched"),
    "qnli": GlueTask("qnli", ("question", "sentence"), 2, "accuracy"),
    "rte": GlueTask("rte", ("sentence1", "sentence2"), 2, "accuracy"),
}
LOCAL_BUILDERS = {"parquet": "parquet", "jsonl": "json"}


def local_hint(task: str) -> str:
    return (
        f"point at local files instead: data.path = a directory holding {task}/train-*.parquet and "
        f"{task}/{GLUE_TASKS[task].validation_split}-*.parquet (or .jsonl), laid out as on the Hub's {GLUE_HUB_NAME}"
    )


def _local_split(path: str, task: GlueTask, split: str) -> datasets.Dataset:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"data.path {path!r} is not a directory; {local_hint(task.name)}")
    for extension, builder in LOCAL_BUILDERS.items():
        files = sorted(glob.glob(os.path.join(path, task.name, f"{split}-*.{extension}")))
        if files:
            return datasets.load_dataset(builder, data_files=files, split="train")
    raise FileNotFoundError(
        f"data.path {path!r} has no {task.name}/{split}-*.parquet or .jsonl; {local_hint(task.name)}"
    )


def load_split(task: GlueTask, split: str, path: str | None) -> datasets.Dataset:
    """One split ("train" or the task's validation split) with its text columns and "label"."""
    if path is not None:
        return _local_split(path, task, split)
    try:
        return datasets.load_dataset(GLUE_HUB_NAME, task.name, split=split)
    except OSError as error:  # ConnectionError and the Hub's own errors are OSErrors
        raise RuntimeError(
            f"data.task {task.name!r}: could not load {GLUE_HUB_NAME} from the Hub ({error}); {local_hint(task.name)}"
        ) from None
