"""Offline stand-ins for GLUE: seeded classification and regression tasks with a learnable signal.

Each example is a random word sequence framed like RoBERTa's (<s> ... </s>). A classification
example carries one to three marker words of its class among the filler; a regression example's
target is the number of marker words it carries (0..5, STS-B's range) plus noise. A small model
can learn either in a few hundred steps, so methods can be compared on CPU by score, not just loss.
"""

import torch

from workloads.glue_tasks import GlueTask

SYNTHETIC_TASKS = {
    "synthetic-classification": GlueTask("synthetic-classification", (), 3, "accuracy"),
    "synthetic-regression": GlueTask("synthetic-regression", (), 1, "pearson_spearman"),
}
BOS_ID, PAD_ID, EOS_ID = 0, 1, 2  # RoBERTa's special ids
WORD_IDS = range(3, 1000)  # fits any RoBERTa vocabulary, the tiny one's included
MARKERS_PER_CLASS = 8
MAX_REGRESSION_MARKERS = 5
REGRESSION_NOISE = 0.25
DATA_SEED = 1234  # the examples are fixed, like a real task's; a run's seed only orders them
SPLIT_SIZES = {"train": 1024, "validation": 256}


def _markers(task: GlueTask) -> torch.Tensor:
    """(classes, MARKERS_PER_CLASS) marker word ids; regression uses one class of them."""
    classes = max(task.num_labels, 1)
    return torch.arange(classes * MARKERS_PER_CLASS).view(classes, MARKERS_PER_CLASS) + WORD_IDS.start


def make_split(task: GlueTask, split: str, max_length: int) -> list[dict]:
    """The split's examples as {"input_ids": list, "label": int | float}."""
    generator = torch.Generator().manual_seed(DATA_SEED + list(SPLIT_SIZES).index(split))
    markers = _markers(task)
    first_filler = WORD_IDS.start + markers.numel()
    examples = []
    for _ in range(SPLIT_SIZES[split]):
        words = int(torch.randint(max_length // 2 - 2, max_length - 1, (), generator=generator))
        sequence = torch.randint(first_filler, WORD_IDS.stop, (words,), generator=generator)
        if task.num_labels == 1:
            count = int(torch.randint(0, MAX_REGRESSION_MARKERS + 1, (), generator=generator))
            label = count + REGRESSION_NOISE * float(torch.randn((), generator=generator))
            chosen = markers[0][torch.randint(0, MARKERS_PER_CLASS, (count,), generator=generator)]
        else:
            label = int(torch.randint(0, task.num_labels, (), generator=generator))
            count = int(torch.randint(1, 4, (), generator=generator))
            chosen = markers[label][torch.randint(0, MARKERS_PER_CLASS, (count,), generator=generator)]
        positions = torch.randperm(words, generator=generator)[: len(chosen)]
        sequence[positions] = chosen
        examples.append({"input_ids": [BOS_ID, *sequence.tolist(), EOS_ID], "label": label})
    return examples
