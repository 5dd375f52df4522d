"""Local GLUE copies in the layouts people have them: the Hub's parquet, GLUE's own TSV download
(its column names, label words, CoLA without a header, quotes that are text, dev as validation)
and plain CSV, each read into the Hub's columns and labels (tests/data/glue/)."""

from pathlib import Path

import pandas as pd
import pytest

from workloads.glue_splits import load_split
from workloads.glue_tasks import GLUE_TASKS

GLUE = Path(__file__).parents[1] / "data" / "glue"


def rows(layout: str, task: str, split: str) -> list[dict]:
    return list(load_split(GLUE_TASKS[task], split, str(GLUE / layout)).select_columns(
        [*GLUE_TASKS[task].text_columns, "label"]))


@pytest.mark.parametrize("split", ["train", "validation"])
def test_mrpc_reads_the_same_rows_from_parquet_glues_tsv_and_csv(split):
    hub = rows("hub", "mrpc", split)
    assert rows("tsv", "mrpc", split) == hub == rows("csv", "mrpc", split)
    assert len(hub) == {"train": 24, "validation": 10}[split] and {row["label"] for row in hub} == {0, 1}
    assert any(row["sentence1"].startswith('"') for row in hub)  # quotes are text, kept as written


def test_a_plain_tab_separated_read_of_glues_mrpc_fails_where_ours_reads_every_row():
    """What a user converting by hand meets: quotes read as quoting run one row into the next
    (here to the end of the file)."""
    with pytest.raises(pd.errors.ParserError, match="EOF inside string"):
        pd.read_csv(GLUE / "tsv" / "MRPC" / "train.tsv", sep="\t")
    assert len(rows("tsv", "mrpc", "train")) == 24


def test_glues_own_files_of_the_other_tasks():
    cola = rows("tsv", "cola", "train")  # no header: source, label, judgement, sentence
    assert len(cola) == 12 and [row["label"] for row in cola[:2]] == [0, 1] and cola[0]["sentence"].endswith(" .")
    mnli = rows("tsv", "mnli", "validation_matched")  # dev_matched.tsv, labels as words
    assert [row["label"] for row in mnli] == [0, 1, 2, 0, 1, 2] and mnli[0]["hypothesis"].startswith('" ')
    stsb = rows("tsv", "stsb", "train")
    assert [row["label"] for row in stsb[:3]] == [0.0, 0.8, 1.6]


def test_rows_cut_short_are_skipped_and_said(capsys):
    assert len(rows("tsv", "qqp", "train")) == 8
    assert "QQP/train.tsv: skipped 1 of 9 rows with fewer than 6 fields" in capsys.readouterr().err


def test_a_folder_with_no_layout_names_what_was_looked_for(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.txt").write_text("not a layout\n")
    with pytest.raises(FileNotFoundError) as missing:
        load_split(GLUE_TASKS["rte"], "train", str(tmp_path))
    assert str(missing.value) == (
        f"data.path {str(tmp_path)!r} holds no rte train split; looked for rte/train-*.parquet or .jsonl (the Hub's "
        "layout), RTE/train.tsv (GLUE's download), or rte/train as .csv, .tsv or .jsonl with columns sentence1, "
        "sentence2, label (the Hub: nyu-mll/glue)")


def test_an_unknown_label_word_names_its_file_and_line(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n")
    with pytest.raises(ValueError, match=r"RTE/train.tsv:3: label 'maybe' is not one of rte's; accepted: entailment, "
                                         r"not_entailment, 0, 1"):
        load_split(GLUE_TASKS["rte"], "train", str(tmp_path))


@pytest.mark.slow  # starts worker processes
@pytest.mark.parametrize("layout", ["tsv", "hub", "csv"])
def test_mrpc_in_each_layout_trains_and_reports_accuracy_and_f1(layout, write_suite, tmp_path):
    from reports.render import render_report
    from suites.load import load_suite
    from tests.conftest import run_locally
    from tests.text_fixtures import make_tokenizer_dir

    tokenizer = make_tokenizer_dir(tmp_path / "tokenizer")
    suite = load_suite(write_suite(f"""
        [defaults]
        steps = 3
        batch_size = 4
        seq_len = 32
        timing_warmup_steps = 1
        device = "cpu"
        [[workloads]]
        name = "roberta_glue"
        size = "tiny"
        data = {{ task = "mrpc", path = "{GLUE / layout}", tokenizer = "{tokenizer}" }}
        [[methods]]
        name = "full"
    """))
    results = tmp_path / "r.jsonl"
    [record] = run_locally(suite, results, progress=False)
    assert record.status == "ok" and set(record.metrics.task_metrics) == {"accuracy", "f1"}
    render_report(results, tmp_path / "report")
    [row] = pd.read_csv(tmp_path / "report" / "summary.csv").to_dict("records")
    assert row["workload"] == "roberta_glue-tiny mrpc"
    assert row["metrics.task_metrics.accuracy_mean"] == pytest.approx(record.metrics.task_metrics["accuracy"])
    assert row["metrics.task_metrics.f1_mean"] == pytest.approx(record.metrics.task_metrics["f1"])
