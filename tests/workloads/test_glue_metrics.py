"""GLUE's metric for each task on hand-made predictions, checked against hand-computed values."""

import math

import pytest

from workloads.glue_metrics import glue_metrics
from workloads.glue_tasks import GLUE_TASKS

# 4 true positives, 3 true negatives, 2 false positives, 1 false negative.
LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
PREDICTIONS = [1, 1, 1, 1, 0, 0, 0, 1, 1, 0]
TP, TN, FP, FN = 4, 3, 2, 1


def test_each_task_has_the_metric_glue_defines():
    kinds = {name: task.metric for name, task in GLUE_TASKS.items()}
    assert kinds == {
        "cola": "matthews", "sst2": "accuracy", "mrpc": "f1_accuracy", "qqp": "f1_accuracy",
        "stsb": "pearson_spearman", "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy",
    }
    assert GLUE_TASKS["mnli"].num_labels == 3 and GLUE_TASKS["stsb"].num_labels == 1


def test_matthews_for_cola():
    expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    metrics = glue_metrics("matthews", PREDICTIONS, LABELS)
    assert metrics["matthews_correlation"] == pytest.approx(expected)
    assert metrics["score"] == pytest.approx(expected)


@pytest.mark.parametrize("task", ["mrpc", "qqp"])
def test_f1_and_accuracy_for_mrpc_and_qqp(task):
    f1 = 2 * TP / (2 * TP + FP + FN)
    accuracy = (TP + TN) / len(LABELS)
    metrics = glue_metrics(GLUE_TASKS[task].metric, PREDICTIONS, LABELS)
    assert metrics["f1"] == pytest.approx(f1) and metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["score"] == pytest.approx((f1 + accuracy) / 2)


@pytest.mark.parametrize("task", ["sst2", "mnli", "qnli", "rte"])
def test_accuracy_otherwise(task):
    labels, predictions = [0, 1, 2, 2, 1, 0], [0, 1, 1, 2, 1, 2]
    assert glue_metrics(GLUE_TASKS[task].metric, predictions, labels) == {"accuracy": pytest.approx(4 / 6), "score": pytest.approx(4 / 6)}


def test_pearson_and_spearman_for_stsb():
    labels = [0.0, 1.0, 2.0, 3.0, 4.0]
    squares = [x * x for x in labels]  # monotonic but not linear: Spearman 1, Pearson below 1
    mean_x, mean_y = sum(labels) / 5, sum(squares) / 5
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(labels, squares))
    pearson = covariance / math.sqrt(sum((x - mean_x) ** 2 for x in labels) * sum((y - mean_y) ** 2 for y in squares))
    metrics = glue_metrics("pearson_spearman", squares, labels)
    assert metrics["pearson"] == pytest.approx(pearson) and pearson < 0.99
    assert metrics["spearman"] == pytest.approx(1.0)
    assert glue_metrics("pearson_spearman", [4.0, 3.0, 2.0, 1.0, 0.0], labels)["spearman"] == pytest.approx(-1.0)


def test_unknown_metric_kind_is_named():
    with pytest.raises(ValueError, match="metric kind 'bleu' is not known; accepted: matthews"):
        glue_metrics("bleu", [0], [0])
