"""A GLUE split from the Hub or from a local copy in any of the layouts people have, read into
the columns and labels of the Hub's `nyu-mll/glue` (glue_tasks.py), so the rest of the workload
sees one shape. Local layouts:

  - the Hub's layout: DIR/<task>/<split>-*.parquet or .jsonl (MNLI's validation split is
    "validation_matched");
  - GLUE's own download (its download_glue_data.py): DIR/MRPC/train.tsv and dev.tsv, SST-2/,
    STS-B/, MNLI/dev_matched.tsv, ..., with GLUE's column names (MRPC's "#1 String", MNLI's
    "gold_label", ...), its label words (MNLI's "entailment", ...), CoLA without a header, and
    quotes that are part of the text: read with quoting off (a plain pandas.read_csv(sep="\\t")
    treats them as quoting and drops or merges rows);
  - CSV, TSV or JSON Lines named by split (train, validation or dev) with the Hub's column names
    or GLUE's: DIR/<task>/train.csv.

The folder of a task may be named as GLUE names it or as the Hub does ("SST-2" or "sst2").
"""

import csv
import glob
import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workloads.glue_tasks import GLUE_HUB_NAME, GlueTask

if TYPE_CHECKING:
    import datasets

ENTAILMENT = {"entailment": 0, "not_entailment": 1}


@dataclass(frozen=True)
class GlueTsv:
    """How GLUE's own TSV files of a task are laid out."""

    folder: str
    """GLUE's folder name, e.g. "SST-2"."""
    text: tuple[str | int, ...]
    """The text columns in the Hub's order, by GLUE's header name (or index, without a header)."""
    label: str | int
    """The label column."""
    label_ids: dict[str, int] | None = None
    """Label words to the Hub's ids; None where the label is a number."""
    header: bool = True
    """Whether the first line names the columns (CoLA's files have none)."""


GLUE_TSV = {
    "cola": GlueTsv("CoLA", (3,), 1, header=False),  # source, label, original label, sentence
    "sst2": GlueTsv("SST-2", ("sentence",), "label"),
    "mrpc": GlueTsv("MRPC", ("#1 String", "#2 String"), "Quality"),
    "qqp": GlueTsv("QQP", ("question1", "question2"), "is_duplicate"),
    "stsb": GlueTsv("STS-B", ("sentence1", "sentence2"), "score"),
    "mnli": GlueTsv("MNLI", ("sentence1", "sentence2"), "gold_label", {"entailment": 0, "neutral": 1, "contradiction": 2}),
    "qnli": GlueTsv("QNLI", ("question", "sentence"), "label", ENTAILMENT),
    "rte": GlueTsv("RTE", ("sentence1", "sentence2"), "label", ENTAILMENT),
}
"""GLUE's download layout per task (checked against its files: MRPC's header is
"Quality  #1 ID  #2 ID  #1 String  #2 String", STS-B's ends "sentence1  sentence2  score")."""
HUB_BUILDERS = {"parquet": "parquet", "jsonl": "json"}
FILE_FORMATS = ("tsv", "csv", "jsonl")


def _normalised(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _split_stems(task: GlueTask, split: str) -> tuple[str, ...]:
    """File names a split may have: the Hub's, and GLUE's "dev" for validation."""
    if split == "train":
        return ("train",)
    return (split, split.replace("validation", "dev"))


def looked_for(task: GlueTask, split: str) -> str:
    """What a local copy of the split may look like, for error lines."""
    glue_stem = _split_stems(task, split)[-1]
    stems = " or ".join(_split_stems(task, split))
    return (f"{task.name}/{split}-*.parquet or .jsonl (the Hub's layout), {GLUE_TSV[task.name].folder}/{glue_stem}.tsv "
            f"(GLUE's download), or {task.name}/{stems} as .csv, .tsv or .jsonl with columns "
            f"{', '.join([*task.text_columns, 'label'])}")


def _task_folders(path: str, task: GlueTask) -> list[str]:
    folders = [os.path.join(path, entry) for entry in sorted(os.listdir(path))
               if os.path.isdir(os.path.join(path, entry)) and _normalised(entry) == task.name]
    return folders + ([path] if _normalised(os.path.basename(os.path.abspath(path))) == task.name else [])


def _label(value: str, task: GlueTask, where: str):
    layout = GLUE_TSV[task.name]
    if task.num_labels == 1:
        return float(value)
    if value.strip().lstrip("-").isdigit():
        return int(value)
    if layout.label_ids and value in layout.label_ids:
        return layout.label_ids[value]
    accepted = ", ".join([*(layout.label_ids or {}), *map(str, range(task.num_labels))])
    raise ValueError(f"{where}: label {value!r} is not one of {task.name}'s; accepted: {accepted}")


def _columns(header: list[str], task: GlueTask, file: str) -> tuple[list, object]:
    """(text column positions, label position) in a file with this header: the Hub's names, or
    GLUE's."""
    for names in ([*task.text_columns, "label"], [*GLUE_TSV[task.name].text, GLUE_TSV[task.name].label]):
        if all(name in header for name in names):
            return [header.index(name) for name in names[:-1]], header.index(names[-1])
    raise ValueError(f"{file}: columns {header} name neither the Hub's {[*task.text_columns, 'label']} nor GLUE's "
                     f"{[*GLUE_TSV[task.name].text, GLUE_TSV[task.name].label]}")


def _rows_of_delimited(file: str) -> list[list[str]]:
    with open(file, newline="", encoding="utf-8") as handle:
        if file.endswith(".tsv"):
            # GLUE's quotes are text: "Amrozi accused his brother , whom he called " the witness " ..."
            return list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
        return list(csv.reader(handle))


def _read_json_lines(file: str, task: GlueTask) -> dict[str, list]:
    names = [*task.text_columns, "label"]
    with open(file, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    missing = [name for name in names if records and name not in records[0]]
    if missing:
        raise ValueError(f"{file}: no {', '.join(missing)} field; accepted: {names}")
    return {name: [record[name] for record in records] for name in names}


def _read_delimited(file: str, task: GlueTask) -> dict[str, list]:
    """A CSV or TSV file's rows as the Hub's columns. Rows with fewer fields than the first (a few
    of QQP's lines are cut) are skipped, and said."""
    rows, layout = _rows_of_delimited(file), GLUE_TSV[task.name]
    if file.endswith(".tsv") and not layout.header and not set(task.text_columns) & set(rows[0] if rows else []):
        text_positions, label_position, numbered = layout.text, layout.label, list(enumerate(rows, 1))
    else:
        text_positions, label_position = _columns(rows[0] if rows else [], task, file)
        numbered = list(enumerate(rows[1:], 2))  # line numbers, the header being line 1
    width = len(rows[0]) if rows else 0
    whole = [(number, row) for number, row in numbered if len(row) >= width]
    if len(whole) < len(numbered):
        print(f"warning: {file}: skipped {len(numbered) - len(whole)} of {len(numbered)} rows with fewer than {width} "
              "fields", file=sys.stderr)
    columns = {name: [row[position] for _, row in whole] for name, position in zip(task.text_columns, text_positions)}
    columns["label"] = [_label(row[label_position], task, f"{file}:{number}") for number, row in whole]
    return columns


def local_hint(task: GlueTask) -> str:
    return f"point at local files instead: data.path = a directory holding {looked_for(task, 'train')}"


def load_split(task: GlueTask, split: str, path: str | None) -> "datasets.Dataset":
    """One split ("train" or the task's validation split) with its text columns and "label", from
    the local copy at `path`, or the Hub's where None."""
    import datasets  # here: with pandas and pyarrow it takes a second, and Markov and synthetic runs never need it

    if path is not None:
        return _local_split(path, task, split)
    try:
        return datasets.load_dataset(GLUE_HUB_NAME, task.name, split=split)
    except OSError as error:  # ConnectionError and the Hub's own errors are OSErrors
        raise RuntimeError(
            f"data.task {task.name!r}: could not load {GLUE_HUB_NAME} from the Hub ({error}); {local_hint(task)}"
        ) from None


def _local_split(path: str, task: GlueTask, split: str) -> "datasets.Dataset":
    """One split of a local copy, as the Hub's columns; a FileNotFoundError naming what was looked
    for where no layout holds it."""
    import datasets  # here, as in load_split

    if not os.path.isdir(path):
        raise FileNotFoundError(f"data.path {path!r} is not a directory; it must hold {looked_for(task, split)}")
    for extension, builder in HUB_BUILDERS.items():
        files = sorted(glob.glob(os.path.join(path, task.name, f"{split}-*.{extension}")))
        if files:
            return datasets.load_dataset(builder, data_files=files, split="train")
    for folder in _task_folders(path, task):
        for stem in _split_stems(task, split):
            for extension in FILE_FORMATS:
                file = os.path.join(folder, f"{stem}.{extension}")
                if os.path.isfile(file):
                    read = _read_json_lines if extension == "jsonl" else _read_delimited
                    return datasets.Dataset.from_dict(read(file, task))
    raise FileNotFoundError(f"data.path {path!r} holds no {task.name} {split} split; looked for {looked_for(task, split)}"
                            f" (the Hub: {GLUE_HUB_NAME})")
