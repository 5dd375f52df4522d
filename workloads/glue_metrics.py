"""GLUE's per-task metrics, as the benchmark defines them, from scikit-learn and scipy.

A task with two metrics (MRPC and QQP: F1 and accuracy; STS-B: Pearson and Spearman) is scored
on the leaderboard by their mean, given here as "score"; a single-metric task's score is that metric.
"""

METRIC_KINDS = ("matthews", "f1_accuracy", "pearson_spearman", "accuracy")
METRIC_MODULES = ("scipy.stats", "sklearn.metrics")
"""What glue_metrics imports on its first call (together a second and a half)."""


def glue_metrics(kind: str, predictions, labels) -> dict:
    """Metric values (fractions, not percent) of predicted classes or regression values."""
    # Imported here (METRIC_MODULES): they would add a second and a half to every harness start.
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if kind == "matthews":
        values = {"matthews_correlation": matthews_corrcoef(labels, predictions)}
    elif kind == "f1_accuracy":
        values = {"f1": f1_score(labels, predictions), "accuracy": accuracy_score(labels, predictions)}
    elif kind == "pearson_spearman":
        values = {
            "pearson": pearsonr(predictions, labels).statistic,
            "spearman": spearmanr(predictions, labels).statistic,
        }
    elif kind == "accuracy":
        values = {"accuracy": accuracy_score(labels, predictions)}
    else:
        raise ValueError(f"metric kind {kind!r} is not known; accepted: {', '.join(METRIC_KINDS)}")
    values = {name: float(value) for name, value in values.items()}
    return {**values, "score": sum(values.values()) / len(values)}
