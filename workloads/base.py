"""The workload contract: what is trained, on which data, and how it is scored."""

from typing import Iterator, Protocol

import torch

from suites.spec import RunSpec

Batch = dict[str, torch.Tensor]


class Workload(Protocol):
    target_modules: tuple[str, ...]
    """Name suffixes of the attention and MLP Linear layers that low-rank methods adapt."""
    head_modules: tuple[str, ...]
    """Names of modules a fine-tuning task adds (a classifier head): trained by every method,
    LoRA included when it freezes the rest; empty for pre-training."""

    def build_model(self, spec: RunSpec) -> torch.nn.Module:
        """The model, on CPU in float32 (the loop moves and casts it)."""

    def train_batches(self, spec: RunSpec) -> Iterator[Batch]:
        """An endless stream of training micro-batches, seeded by spec.seed."""

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Mean training loss of one batch."""

    def count_tokens(self, batch: Batch) -> int:
        """Non-padding tokens in the batch, for tokens/s."""

    def evaluate(self, model: torch.nn.Module, spec: RunSpec) -> dict:
        """Held-out metrics (e.g. eval_loss, perplexity), as plain numbers."""

    def loss_floor(self, spec: RunSpec) -> float | None:
        """The lowest loss achievable on the data, where known (the generated corpus)."""


class TransformersLossMixin:
    """loss and count_tokens for a transformers model that computes its own loss from labels."""

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        # The model's head picks the loss from its labels and config: shifted next-token
        # cross-entropy ignoring -100 for causal LMs; cross-entropy or MSE (STS-B) for classifiers.
        return model(**batch).loss

    def count_tokens(self, batch: Batch) -> int:
        return int(batch["attention_mask"].sum())
