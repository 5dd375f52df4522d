"""RoBERTa on GLUE: local fixtures in the Hub's layout, synthetic tasks, methods unchanged, errors."""

from pathlib import Path

import datasets
import pytest
import torch
from transformers import RobertaConfig, RobertaForMaskedLM

from core.spec import RunSpec
from methods import prepare_training
from tests.text_fixtures import make_tokenizer_dir, sentence
from training.loop import train
from workloads import glue_splits, glue_tasks
from workloads.roberta_glue import RobertaGlue

WORKLOAD = RobertaGlue()
GLUE_TSV = Path(__file__).parents[1] / "data" / "glue" / "tsv"



def write_glue_split(directory, task: str, split: str, rows: dict, extension: str = "parquet"):
    """One split as the Hub stores nyu-mll/glue: <task>/<split>-00000-of-00001.parquet."""
    (directory / task).mkdir(parents=True, exist_ok=True)
    path = directory / task / f"{split}-00000-of-00001.{extension}"
    dataset = datasets.Dataset.from_dict(rows)
    dataset.to_parquet(path) if extension == "parquet" else dataset.to_json(path)


def pair_rows(count: int, regression: bool = False) -> dict:
    labels = [i % 6 * 1.0 if regression else i % 2 for i in range(count)]
    return {"sentence1": [sentence(i, 3 + i % 5) for i in range(count)],
            "sentence2": [sentence(i + 50, 2 + i % 4) for i in range(count)], "label": labels, "idx": list(range(count))}


@pytest.fixture
def glue_dir(tmp_path):
    directory = tmp_path / "glue"
    write_glue_split(directory, "mrpc", "train", pair_rows(24))
    write_glue_split(directory, "mrpc", "validation", pair_rows(10))
    write_glue_split(directory, "stsb", "train", pair_rows(12, regression=True), extension="jsonl")
    write_glue_split(directory, "stsb", "validation", pair_rows(12, regression=True), extension="jsonl")
    mnli = {"premise": [sentence(i, 4) for i in range(9)], "hypothesis": [sentence(i, 2) for i in range(9)],
            "label": [i % 3 for i in range(9)], "idx": list(range(9))}
    write_glue_split(directory, "mnli", "train", mnli)
    write_glue_split(directory, "mnli", "validation_matched", mnli)
    write_glue_split(directory, "mnli", "validation_mismatched", {**mnli, "label": [(i + 1) % 3 for i in range(9)]})
    return directory


def glue_spec(tmp_path, glue_dir, task: str, **fields) -> RunSpec:
    data = {"task": task, "path": str(glue_dir), "tokenizer": str(make_tokenizer_dir(tmp_path / "tokenizer"))}
    return RunSpec(workload="roberta_glue", size="tiny", method="full", data=data, batch_size=4, seq_len=16, device="cpu", **fields)


def test_pair_task_from_local_parquet_is_tokenized_padded_and_labelled(tmp_path, glue_dir):
    spec = glue_spec(tmp_path, glue_dir, "mrpc")
    batch = next(WORKLOAD.train_batches(spec))
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape == (4, int(lengths.max())) and int(lengths.max()) <= 16
    assert torch.all(batch["input_ids"][batch["attention_mask"] == 0] == 0)  # the fixture tokenizer's <pad>
    assert int((batch["input_ids"] == 1).sum()) == 8  # each row: sentence1 </s> sentence2 </s>
    assert batch["labels"].dtype == torch.long and set(batch["labels"].tolist()) <= {0, 1}
    torch.manual_seed(0)
    metrics = WORKLOAD.evaluate(WORKLOAD.build_model(spec), spec)
    assert metrics.eval_loss is not None and metrics.perplexity is None and metrics.eval_tokens is None
    assert set(metrics.task_metrics) == {"f1", "accuracy"}
    assert metrics.task_score == sum(metrics.task_metrics.values()) / 2


def test_every_training_example_is_seen_once_per_epoch(tmp_path, glue_dir):
    spec = glue_spec(tmp_path, glue_dir, "mrpc")
    batches = WORKLOAD.train_batches(spec)
    epoch = [next(batches) for _ in range(6)]  # 24 examples in batches of 4
    assert sum(int(b["labels"].sum()) for b in epoch) == 12
    rows = {tuple(row[mask.bool()].tolist()) for b in epoch for row, mask in zip(b["input_ids"], b["attention_mask"])}
    assert len(rows) == 24


def test_regression_task_from_jsonl_has_float_labels_and_correlations(tmp_path, glue_dir):
    spec = glue_spec(tmp_path, glue_dir, "stsb")
    assert next(WORKLOAD.train_batches(spec))["labels"].dtype == torch.float32
    model = WORKLOAD.build_model(spec)
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    evaluation = WORKLOAD.evaluate(model, spec)
    assert set(evaluation.task_metrics) == {"pearson", "spearman"} and evaluation.task_score is not None


def test_mnli_is_scored_on_validation_matched(tmp_path, glue_dir):
    (glue_dir / "mnli" / "validation_matched-00000-of-00001.parquet").rename(glue_dir / "mnli" / "elsewhere.parquet")
    spec = glue_spec(tmp_path, glue_dir, "mnli")
    with pytest.raises(FileNotFoundError, match="holds no mnli validation_matched split; looked for "
                       "mnli/validation_matched-\\*.parquet or .jsonl \\(the Hub's layout\\), MNLI/dev_matched.tsv"):
        WORKLOAD.evaluate(WORKLOAD.build_model(spec), spec)


def test_mnli_records_mismatched_accuracy_beside_the_matched_score(tmp_path):
    spec = glue_spec(tmp_path, GLUE_TSV, "mnli")  # GLUE's MNLI/dev_matched.tsv and dev_mismatched.tsv
    torch.manual_seed(0)
    model = WORKLOAD.build_model(spec)
    evaluation = WORKLOAD.evaluate(model, spec)
    assert set(evaluation.task_metrics) == {"accuracy", "mismatched_accuracy"}
    assert evaluation.task_score == evaluation.task_metrics["accuracy"]  # the paper's MNLI column is matched
    model.eval()  # as evaluate has it: no dropout
    assert evaluation.task_metrics["mismatched_accuracy"] == WORKLOAD._scored(model, spec, "validation_mismatched")[1]["accuracy"]
    assert evaluation.eval_loss == WORKLOAD._scored(model, spec, "validation_matched")[0]


def test_mnli_without_its_mismatched_split_is_refused_before_the_run(tmp_path, glue_dir):
    (glue_dir / "mnli" / "validation_mismatched-00000-of-00001.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="holds no mnli validation_mismatched split; looked for "
                       "mnli/validation_mismatched-\\*.parquet or .jsonl \\(the Hub's layout\\), MNLI/dev_mismatched.tsv"):
        WORKLOAD.check(glue_spec(tmp_path, glue_dir, "mnli", eval_batches=1))
    WORKLOAD.check(glue_spec(tmp_path, glue_dir, "mnli", eval_batches=0))  # a run that evaluates nothing reads none


def test_lora_adapts_all_six_linears_of_each_layer_and_trains_the_head():
    spec = RunSpec(workload="roberta_glue", size="tiny", method="lora", data={"task": "synthetic-classification"},
                   method_options={"rank": 4, "train_non_lora": False}, seq_len=32, device="cpu")
    training = prepare_training(WORKLOAD.build_model(spec), spec, WORKLOAD)
    trainable = {name for name, p in training.model.named_parameters() if p.requires_grad}
    adapted = sorted(name.split(".lora_A")[0].split("layer.")[1] for name in trainable if "lora_A" in name)
    assert adapted == sorted(f"{i}.{suffix}" for i in range(2) for suffix in (
        "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
        "intermediate.dense", "output.dense"))
    head = {name for name in trainable if ".classifier." in name}
    assert len(head) == 4  # dense and out_proj, weight and bias
    assert trainable - head == {name for name in trainable if "lora_" in name}


@pytest.mark.slow
@pytest.mark.parametrize("method, lr", [("full", 1e-3), ("lora", 3e-3)])
def test_methods_learn_the_synthetic_classification_unchanged(method, lr, one_thread):
    spec = RunSpec(workload="roberta_glue", size="tiny", method=method, data={"task": "synthetic-classification"},
                   steps=100, batch_size=16, seq_len=32, lr=lr, eval_batches=1, device="cpu")
    metrics = train(spec, progress=False)[0]
    curve = metrics.loss_curve
    assert sum(curve[-10:]) / 10 < sum(curve[:10]) / 10 - 0.2
    assert metrics.task_metrics["accuracy"] > 0.6  # chance is 1/3; measured 1.0 (full), 0.68 (lora)


@pytest.mark.slow
def test_synthetic_regression_is_learnable(one_thread):
    spec = RunSpec(workload="roberta_glue", size="tiny", method="full", data={"task": "synthetic-regression"},
                   steps=200, batch_size=16, seq_len=32, lr=1e-3, eval_batches=1, device="cpu")
    metrics = train(spec, progress=False)[0]
    assert metrics.task_metrics["pearson"] > 0.5  # chance is 0; measured 0.73


def test_pretrained_size_loads_a_local_checkpoint_with_a_new_head(tmp_path):
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=1024, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                           num_hidden_layers=1, max_position_embeddings=40, type_vocab_size=1)
    pretrained = RobertaForMaskedLM(config)
    pretrained.save_pretrained(tmp_path / "checkpoint")
    spec = RunSpec(workload="roberta_glue", size="base", method="full",
                   data={"task": "synthetic-regression", "checkpoint": str(tmp_path / "checkpoint")}, seq_len=32, device="cpu")
    model = WORKLOAD.build_model(spec)
    assert torch.equal(model.roberta.embeddings.word_embeddings.weight, pretrained.roberta.embeddings.word_embeddings.weight)
    assert model.config.num_labels == 1 and model.classifier.out_proj.out_features == 1


def test_unknown_task_is_named():
    spec = RunSpec(workload="roberta_glue", size="tiny", method="full", data={"task": "wnli"})
    with pytest.raises(ValueError, match="data.task 'wnli' is not known; accepted: cola, sst2, mrpc"):
        WORKLOAD.build_model(spec)


def test_missing_local_glue_path_is_named(tmp_path, glue_dir):
    spec = glue_spec(tmp_path, tmp_path / "absent", "mrpc")
    with pytest.raises(FileNotFoundError, match="absent' is not a directory; it must hold mrpc/train-\\*.parquet"):
        next(WORKLOAD.train_batches(spec))


def test_tokenizer_too_large_for_the_model(tmp_path, glue_dir):
    spec = glue_spec(tmp_path, glue_dir, "mrpc")
    make_tokenizer_dir(tmp_path / "tokenizer", extra_words=1100)
    with pytest.raises(ValueError, match="but the model's vocab_size is 1024"):
        next(WORKLOAD.train_batches(spec))


def test_random_size_on_a_glue_task_needs_a_tokenizer(tmp_path, glue_dir):
    spec = RunSpec(workload="roberta_glue", size="tiny", method="full", data={"task": "rte", "path": str(glue_dir)})
    with pytest.raises(ValueError, match="needs data.tokenizer"):
        next(WORKLOAD.train_batches(spec))


def test_unreachable_hub_says_how_to_use_local_files(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match="could not load nyu-mll/glue .* data.path = a directory holding cola/train"):
        glue_splits.load_split(glue_tasks.GLUE_TASKS["cola"], "train", None)


def test_unreachable_checkpoint_says_how_to_use_a_local_one(tmp_path):
    spec = RunSpec(workload="roberta_glue", size="base", method="full",
                   data={"task": "synthetic-regression", "checkpoint": str(tmp_path / "no-checkpoint")})
    with pytest.raises(RuntimeError, match="could not be loaded .* data.checkpoint = DIR"):
        WORKLOAD.build_model(spec)
