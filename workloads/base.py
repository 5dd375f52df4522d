"""The workload contract: what is trained, on which data, and how it is scored."""

from typing import Iterator

import torch

from suites.options import parse_options
from suites.spec import RunSpec

Batch = dict[str, torch.Tensor]


class Workload:
    """A registered workload; subclasses fill in every method below."""

    name: str
    """The name suites and run specs use, e.g. "llama"."""
    data_options: type
    """Frozen dataclass of the `data` options a run may give, each with a docstring."""
    target_modules: tuple[str, ...]
    """Name suffixes of the attention and MLP Linear layers that low-rank methods adapt."""
    head_modules: tuple[str, ...]
    """Names of modules a fine-tuning task adds (a classifier head): trained by every method,
    LoRA included when it freezes the rest; empty for pre-training."""

    def data(self, spec: RunSpec):
        """spec.data parsed into data_options; an OptionError names a key or value it refuses."""
        return parse_options(self.data_options, spec.data, "data.")

    def build_model(self, spec: RunSpec) -> torch.nn.Module:
        """The model, on CPU in float32 (the loop moves and casts it)."""
        raise NotImplementedError

    def train_batches(self, spec: RunSpec) -> Iterator[Batch]:
        """An endless stream of training micro-batches, seeded by spec.seed."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Mean training loss of one batch."""
        raise NotImplementedError

    def count_tokens(self, batch: Batch) -> int:
        """Non-padding tokens in the batch, for tokens/s."""
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, spec: RunSpec) -> dict:
        """Held-out metrics keyed by results.schema.Metrics field names (eval_loss, perplexity,
        task_score, ...); empty when spec.eval_batches is 0."""
        raise NotImplementedError

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
