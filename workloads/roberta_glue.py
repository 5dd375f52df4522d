"""RoBERTa fine-tuned on a GLUE task, as in the GaLore paper's Table 4, or on an offline stand-in.

data.task names one of the eight GLUE tasks (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte), read
from the Hub or from data.path, or a synthetic task (workloads/synthetic_glue.py) that needs no
files. Size "base" loads `roberta-base` (or data.checkpoint, a local checkpoint directory) with a new
classification head; other sizes in workloads/sizes.toml are randomly initialised.
"""

import math
from dataclasses import dataclass
from functools import cache
from typing import Iterator

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import AutoConfig, AutoModelForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

from results.schema import Evaluation
from workloads import glue_splits, glue_tasks, synthetic_glue, text_corpus
from workloads.base import ALL_ROWS, TransformersLossMixin, Workload, keep_rows
from workloads.glue_metrics import METRIC_MODULES, glue_metrics
from workloads.hub import hub_reachable, lookup_options
from workloads.sizes import model_config

TASKS = {**glue_tasks.GLUE_TASKS, **synthetic_glue.SYNTHETIC_TASKS}
MIN_SYNTHETIC_LENGTH = 16  # room for five regression markers among the filler
TOKENIZER_HINT = (
    "point at a local tokenizer directory instead: data.tokenizer = DIR (a roberta-base checkpoint holds one)"
)


@dataclass(frozen=True)
class GlueData:
    task: str
    """A GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte) or an offline stand-in
    (synthetic-classification, synthetic-regression)."""
    path: str | None = None
    """A local GLUE copy laid out as the Hub's nyu-mll/glue (DIR/<task>/<split>-*.parquet or
    .jsonl); None reads the Hub."""
    tokenizer: str | None = None
    """A tokenizer's Hub name or local directory; None takes the checkpoint's."""
    checkpoint: str | None = None
    """A pretrained size's checkpoint: a local directory or Hub name instead of the size's own
    (workloads/sizes.toml "pretrained")."""

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"data.task {self.task!r} is not known; accepted: {', '.join(TASKS)}")


@cache
def _tokenized_split(
    task_name: str, split: str, path: str | None, tokenizer_name: str, model_vocab_size: int, max_length: int
):
    task = TASKS[task_name]
    tokenizer = text_corpus.load_tokenizer(tokenizer_name, model_vocab_size, TOKENIZER_HINT)
    rows = glue_splits.load_split(task, split, path)
    texts = [list(rows[column]) for column in task.text_columns]
    encoded = tokenizer(*texts, truncation=True, max_length=max_length)
    examples = [{"input_ids": ids, "label": label} for ids, label in zip(encoded["input_ids"], rows["label"])]
    return examples, tokenizer.pad_token_id


def _refuse_a_short_synthetic_sequence(seq_len: int, task: str):
    if seq_len < MIN_SYNTHETIC_LENGTH:
        raise ValueError(f"seq_len {seq_len} is too short for {task}; use at least {MIN_SYNTHETIC_LENGTH}")


def _refuse_a_batch_above(batch_size: int, examples: int, task: str):
    # Batches are whole: a batch larger than the split would never be drawn.
    if batch_size > examples:
        raise ValueError(f"batch_size = {batch_size} is larger than the {examples} training examples of {task}; "
                         f"accepted: 1 to {examples}")


class RobertaGlue(TransformersLossMixin, Workload):
    # As the GaLore repo's run_glue.py: its names match by substring there and by suffix in
    # peft and our methods; either way "output.dense" takes both the attention output projection
    # (attention.output.dense) and the MLP's output (output.dense): all six Linears of a layer.
    head_modules = ("classifier",)
    name = "roberta_glue"
    data_options = GlueData
    packages = ("datasets", "scikit-learn")
    imported_on_first_use = METRIC_MODULES  # every run scores its held-out batches

    def task(self, spec) -> glue_tasks.GlueTask:
        return TASKS[self.data(spec).task]

    def loss_weight(self, batch) -> torch.Tensor:
        labels = batch["labels"]  # one per row: cross-entropy or MSE is averaged over rows
        return torch.tensor(len(labels), device=labels.device)

    def check(self, spec):
        task, data = self.task(spec), self.data(spec)
        if task.name in synthetic_glue.SYNTHETIC_TASKS:
            _refuse_a_short_synthetic_sequence(spec.seq_len, task.name)
            _refuse_a_batch_above(spec.batch_size, synthetic_glue.SPLIT_SIZES["train"], task.name)
            return
        # Found late, these cost a whole run: the tokenizer, and every split the run reads.
        self._tokenizer(spec)
        if data.path is None:
            if not hub_reachable():
                raise RuntimeError(f"data.task {task.name!r} reads {glue_splits.GLUE_HUB_NAME} from the Hub, which "
                                   f"cannot be reached here; {glue_splits.local_hint(task)}")
            return  # the Hub's splits are whole; the run downloads them
        validation_splits = (task.validation_split, *task.further_validation_splits) if spec.eval_batches else ()
        for split in ("train", *validation_splits):
            examples = len(glue_splits.load_split(task, split, data.path))
            if examples == 0:
                raise ValueError(f"data.path {data.path!r}: the {task.name} {split} split holds no rows")
            if split == "train":
                _refuse_a_batch_above(spec.batch_size, examples, task.name)

    def task_name(self, spec) -> str | None:
        return self.data(spec).task

    def _pretrained_name(self, spec) -> str | None:
        """The checkpoint of a pretrained size (data.checkpoint overrides the hub name), else None."""
        values = model_config("roberta_glue", spec.size)
        return (self.data(spec).checkpoint or values["pretrained"]) if "pretrained" in values else None

    def _model_vocab_size(self, spec) -> int:
        name = self._pretrained_name(spec)
        if name is None:
            return model_config("roberta_glue", spec.size)["vocab_size"]
        try:
            return AutoConfig.from_pretrained(name, **lookup_options()).vocab_size
        except OSError as error:
            raise RuntimeError(f"data.checkpoint {name!r} could not be loaded ({str(error).splitlines()[0]}); point at "
                               "a local checkpoint directory instead: data.checkpoint = DIR") from None

    def _tokenizer_name(self, spec) -> str:
        name = self.data(spec).tokenizer or self._pretrained_name(spec)
        if name is None:
            raise ValueError(f"data.task {self.task(spec).name!r} on randomly initialised size {spec.size!r} "
                             "needs data.tokenizer (a tokenizer directory)")
        return name

    def _tokenizer(self, spec):
        return text_corpus.load_tokenizer(self._tokenizer_name(spec), self._model_vocab_size(spec), TOKENIZER_HINT)

    def build_model(self, spec) -> torch.nn.Module:
        task = self.task(spec)
        head = {
            "num_labels": task.num_labels,
            "problem_type": "regression" if task.num_labels == 1 else "single_label_classification",
        }
        name = self._pretrained_name(spec)
        if name is None:
            values = model_config("roberta_glue", spec.size)
            # Position ids start after the padding id (RoBERTa's offset of 2).
            config = RobertaConfig(**values, max_position_embeddings=spec.seq_len + 2, type_vocab_size=1, **head)
            return RobertaForSequenceClassification(config)
        try:
            return AutoModelForSequenceClassification.from_pretrained(name, dtype=torch.float32, **head,
                                                                      **lookup_options())
        except OSError as error:
            first_line = str(error).splitlines()[0]
            raise RuntimeError(
                f"data.checkpoint {name!r} could not be loaded ({first_line}); "
                "point at a local checkpoint directory instead: data.checkpoint = DIR"
            ) from None

    def _examples(self, spec, split: str) -> tuple[list[dict], int]:
        """(examples, padding id) of the train or validation split."""
        task = self.task(spec)
        if task.name in synthetic_glue.SYNTHETIC_TASKS:
            _refuse_a_short_synthetic_sequence(spec.seq_len, task.name)
            return synthetic_glue.make_split(task, split, spec.seq_len), synthetic_glue.PAD_ID
        split = task.validation_split if split == "validation" else split
        return _tokenized_split(task.name, split, self.data(spec).path, self._tokenizer_name(spec),
                                self._model_vocab_size(spec), spec.seq_len)

    def _collate(self, examples: list[dict], pad_id: int, regression: bool) -> dict:
        rows = [torch.tensor(e["input_ids"]) for e in examples]
        input_ids = pad_sequence(rows, batch_first=True, padding_value=pad_id)
        attention_mask = pad_sequence([torch.ones_like(row) for row in rows], batch_first=True)
        labels = torch.tensor([e["label"] for e in examples], dtype=torch.float32 if regression else torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def train_batches(self, spec, rows: slice = ALL_ROWS) -> Iterator[dict]:
        """Epoch after epoch over the training split, reshuffled each epoch from spec.seed."""
        examples, pad_id = self._examples(spec, "train")
        _refuse_a_batch_above(spec.batch_size, len(examples), self.task(spec).name)
        regression = self.task(spec).num_labels == 1
        generator = torch.Generator().manual_seed(spec.seed)
        while True:
            order = torch.randperm(len(examples), generator=generator).tolist()
            for start in range(0, len(order) - spec.batch_size + 1, spec.batch_size):
                # Collated whole (examples are tokenized once, up front), so each rank's rows carry
                # the padding they have in one process's batch; no local name holds the batch, which
                # would keep it alive past its step.
                examples_of_step = [examples[i] for i in order[start : start + spec.batch_size]]
                yield keep_rows(self._collate(examples_of_step, pad_id, regression), rows)

    @torch.no_grad()
    def evaluate(self, model, spec) -> Evaluation:
        """The task's GLUE metrics over its whole validation split, and those of its further
        validation splits (MNLI's mismatched) under their names; eval_batches 0 skips it."""
        if spec.eval_batches == 0:
            return Evaluation()
        task = self.task(spec)
        model.eval()
        eval_loss, task_metrics = self._scored(model, spec, "validation")
        for split in task.further_validation_splits:
            prefix = split.removeprefix("validation_")
            _, further = self._scored(model, spec, split)
            task_metrics |= {f"{prefix}_{name}": value for name, value in further.items() if name != "score"}
        model.train()
        task_score = task_metrics.pop("score")
        return Evaluation(eval_loss=eval_loss, task_score=task_score, task_metrics=task_metrics)

    @torch.no_grad()
    def _scored(self, model, spec, split: str) -> tuple[float, dict]:
        """(mean loss, metrics with their "score") of the model over one whole split."""
        task = self.task(spec)
        examples, pad_id = self._examples(spec, split)
        regression = task.num_labels == 1
        device = next(model.parameters()).device
        predictions, labels, total_loss = [], [], 0.0
        for start in range(0, len(examples), spec.batch_size):
            batch = self._collate(examples[start : start + spec.batch_size], pad_id, regression)
            output = model(**{k: v.to(device) for k, v in batch.items()})
            total_loss += float(output.loss) * len(batch["labels"])
            logits = output.logits.float().cpu()
            predictions.append(logits.squeeze(-1) if regression else logits.argmax(-1))
            labels.append(batch["labels"])
        metrics = glue_metrics(task.metric, torch.cat(predictions).numpy(), torch.cat(labels).numpy())
        return total_loss / len(examples), metrics

    def loss_floor(self, spec) -> float | None:
        return None

    def uniform_loss(self, spec) -> float | None:
        classes = self.task(spec).num_labels
        return math.log(classes) if classes > 1 else None
