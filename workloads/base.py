"""The workload contract: what is trained, on which data, and how it is scored."""

from typing import Iterator

import torch

from core.options import parse_options
from core.spec import RunSpec
from results.schema import Evaluation

Batch = dict[str, torch.Tensor]
ALL_ROWS = slice(None)
"""Every row of each batch: what a process keeps when it is the run's only rank."""


def keep_rows(batch: Batch, rows: slice) -> Batch:
    """The rows of a batch one rank keeps (the batch itself when it keeps them all)."""
    return batch if rows == ALL_ROWS else {name: tensor[rows] for name, tensor in batch.items()}


def unpadded_batch(input_ids: torch.Tensor) -> Batch:
    """A causal-LM training batch of whole sequences: no padding to mask, the labels the ids."""
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids}


class Workload:
    """A registered workload; subclasses fill in every method below."""

    name: str
    """The name suites and run specs use, e.g. "llama"."""
    data_options: type
    """Frozen dataclass of the `data` options a run may give, each with a docstring."""
    head_modules: tuple[str, ...]
    """Names of modules a fine-tuning task adds (a classifier head): trained by every method,
    LoRA included when it freezes the rest; empty for pre-training."""
    packages: tuple[str, ...]
    """The distributions it imports beyond torch and transformers (their pip names), whose
    versions records name."""
    imported_on_first_use: tuple[str, ...] = ()
    """Modules every run imports when it first needs them, not when this module is imported (so
    that a harness start does not pay for them): a process that forks many runs imports them
    once for all (launchers/local/parent.py)."""

    def data(self, spec: RunSpec):
        """spec.data parsed into data_options; an OptionError names a key or value it refuses."""
        return parse_options(self.data_options, spec.data, "data.")

    def check(self, spec: RunSpec):
        """ValueError, in one line, for a spec this workload can never run as asked, found before
        any run (training/preflight.py); nothing by default."""

    def build_model(self, spec: RunSpec) -> torch.nn.Module:
        """The model, on CPU in float32 (the loop moves and casts it)."""
        raise NotImplementedError

    def train_batches(self, spec: RunSpec, rows: slice = ALL_ROWS) -> Iterator[Batch]:
        """An endless stream of training micro-batches, seeded by spec.seed: `rows` of each global
        batch of spec.batch_size, the same global batches on every rank. A workload builds only
        those rows where it can (tokenizing the others would be wasted); training/parallel.py
        decides which rows a rank keeps."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Mean training loss of one batch."""
        raise NotImplementedError

    def count_tokens(self, batch: Batch) -> int:
        """Non-padding tokens in the batch, for tokens/s."""
        raise NotImplementedError

    def loss_weight(self, batch: Batch) -> torch.Tensor:
        """What loss() is a mean over in this batch (predicted tokens, or rows), as a scalar tensor
        on the batch's device: ranks holding different weights are combined by it
        (training/parallel.share_of_mean)."""
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, spec: RunSpec) -> Evaluation:
        """Held-out figures; none when spec.eval_batches is 0."""
        raise NotImplementedError

    def task_name(self, spec: RunSpec) -> str | None:
        """The fine-tuning task the spec's data names, None for pre-training."""
        return None

    def corpus_name(self, spec: RunSpec) -> str | None:
        """The pre-training corpus the spec's data names, None for fine-tuning."""
        return None

    def loss_floor(self, spec: RunSpec) -> float | None:
        """The lowest loss achievable on the data, where known (the generated corpus)."""
        raise NotImplementedError

    def uniform_loss(self, spec: RunSpec) -> float | None:
        """The loss of predicting uniformly (ln of the vocabulary or class count), where a model
        that learnt nothing sits; None where the loss is not a cross-entropy (regression)."""
        raise NotImplementedError


class TransformersLossMixin:
    """loss and count_tokens for a transformers model that computes its own loss from labels."""

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        # The model's head picks the loss from its labels and config: shifted next-token
        # cross-entropy ignoring -100 for causal LMs; cross-entropy or MSE (STS-B) for classifiers.
        return model(**batch).loss

    def count_tokens(self, batch: Batch) -> int:
        return int(batch["attention_mask"].sum())
