"""Causal-LM pre-training from random init, as in the GaLore paper: the paper's LLaMA sizes
(workloads/sizes.toml), or any architecture transformers knows from a Hugging Face config.json
(a shipped name under workloads/configs, or a path; a checkpoint directory is loaded).

data.corpus picks the text: "markov" (default; generated offline, with a known loss floor),
"c4" (allenai/c4 "en" streamed from the Hub) or "local" (data.path, a directory of text files).
"""

import math
import sys
from dataclasses import dataclass
from functools import cache
from typing import Iterator

import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PretrainedConfig

from results.schema import Evaluation
from workloads import local_text, markov_corpus, text_corpus
from workloads.base import ALL_ROWS, TransformersLossMixin, Workload, keep_rows, unpadded_batch
from workloads.hub import hub_reachable
from workloads.sizes import model_config

CORPORA = ("markov", "c4", "local")
EVAL_SEED_OFFSET = 1_000_003  # held-out sequences come from a stream no training seed draws


@dataclass(frozen=True)
class LlamaData:
    corpus: str = "markov"
    """"markov" (generated offline, known loss floor), "c4" (allenai/c4 "en" from the Hub) or
    "local" (the text files under path)."""
    path: str | None = None
    """corpus "local": a directory of documents: .jsonl(.gz) with a "text" field (a local C4 copy
    works as is), .txt with blank lines between documents, WikiExtractor's <doc> files
    (workloads/local_text.py)."""
    validation_files: str = "*validation*"
    """corpus "local": the file-name pattern of the validation split (C4's names match it)."""
    validation_fraction: float | None = None
    """corpus "local": hold out this fraction (0 to 1) of every file's documents as the validation
    split instead, the same whatever the run's seed; None splits by validation_files."""
    any_extension: bool = False
    """corpus "local": read every file of the folder as text, whatever its name ends in (a
    WikiExtractor dump's AA/wiki_00); False reads .txt and .jsonl(.gz) only."""
    tokenizer: str | None = None
    """corpus "c4" or "local": a tokenizer's Hub name or local directory; None takes t5-base."""
    pack: bool = False
    """corpus "c4" or "local": concatenate documents and cut full rows instead of padding each."""
    eval_tokens: int | None = None
    """Predicted tokens evaluated after training; None takes eval_batches full batches."""
    vocab: int | None = None
    """corpus "markov": token ids the chain uses (2..the model's vocab_size); None takes them all."""
    branching: int = 8
    """corpus "markov": successors of each token."""
    chain_seed: int = 1234
    """corpus "markov": seed of the chain itself (a run's seed only draws sequences from it)."""

    def __post_init__(self):
        if self.corpus not in CORPORA:
            raise ValueError(f"data.corpus {self.corpus!r} is not known; accepted: {', '.join(CORPORA)}")
        if self.corpus == "local" and self.path is None:
            raise ValueError(f"data.corpus 'local' needs data.path; {text_corpus.LOCAL_HINT}")
        if self.branching < 1:
            raise ValueError(f"data.branching must be at least 1, got {self.branching}")
        if self.eval_tokens is not None and self.eval_tokens < 1:
            raise ValueError(f"data.eval_tokens must be positive, got {self.eval_tokens}")
        if self.validation_fraction is not None and not 0 < self.validation_fraction < 1:
            raise ValueError(f"data.validation_fraction = {self.validation_fraction!r}; accepted: a number between 0 "
                             "and 1, or none")


@cache
def _markov_chain(vocab_size: int, branching: int, chain_seed: int) -> markov_corpus.MarkovChain:
    return markov_corpus.make_chain(vocab_size, branching=branching, seed=chain_seed)


@cache
def _tokenizer(name_or_path: str | None, model_vocab_size: int):
    return text_corpus.load_tokenizer(name_or_path, model_vocab_size)


def _ending_with_error(batches: Iterator[dict], message: str) -> Iterator[dict]:
    """The batches, then a clear error instead of a bare StopIteration inside the training loop."""
    yield from batches
    raise ValueError(message)


class LlamaPretraining(TransformersLossMixin, Workload):
    name = "llama"
    data_options = LlamaData
    head_modules = ()
    packages = ("datasets",)

    def check(self, spec):
        if spec.seq_len < 2:
            raise ValueError(f"seq_len = {spec.seq_len}: a causal LM predicts each token from those before it, so a "
                             "sequence needs at least 2 tokens; accepted: 2 or more")
        longest = self.config(spec).max_position_embeddings
        if spec.seq_len > longest:
            raise ValueError(f"seq_len = {spec.seq_len} is longer than size {spec.size!r} takes "
                             f"(max_position_embeddings); accepted: 2..{longest}")
        data = self.data(spec)
        if data.corpus == "markov":
            return
        # Found late, these cost a whole run: the tokenizer, and every split the run reads.
        _tokenizer(data.tokenizer, self.config(spec).vocab_size)
        if data.corpus == "local":
            for split in ("train", "validation") if spec.eval_batches else ("train",):
                if local_text.first_document(split=split, **self._local(spec)) is None:
                    raise ValueError(f"data.path {data.path!r}: the {split} split holds no document")
        elif not hub_reachable():
            text_corpus.load_documents(data.corpus, "train", {})  # its one line: the Hub is out of reach

    def config(self, spec) -> PretrainedConfig:
        values = model_config("llama", spec.size)
        if "model_type" in values:
            values.pop("pretrained", None)
            return AutoConfig.for_model(**values)
        return LlamaConfig(
            **values,
            max_position_embeddings=max(spec.seq_len, 1024),
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            pad_token_id=0,
        )

    def build_model(self, spec) -> torch.nn.Module:
        values = model_config("llama", spec.size)
        if "pretrained" in values:
            return AutoModelForCausalLM.from_pretrained(values["pretrained"], dtype=torch.float32)
        if "model_type" in values:
            return AutoModelForCausalLM.from_config(self.config(spec), dtype=torch.float32)
        # The paper's sizes: LLaMA's own class, as every record and baseline so far was built.
        return LlamaForCausalLM(self.config(spec))

    def _chain(self, spec) -> markov_corpus.MarkovChain:
        data = self.data(spec)
        model_vocab_size = self.config(spec).vocab_size
        # data.vocab narrows the chain to fewer token ids than the model has, for quick learning.
        chain_vocab_size = data.vocab or model_vocab_size
        if not 2 <= chain_vocab_size <= model_vocab_size:
            raise ValueError(
                f"data.vocab {chain_vocab_size} must lie in 2..{model_vocab_size} (the model's vocab_size)"
            )
        return _markov_chain(chain_vocab_size, data.branching, data.chain_seed)

    def _markov_batches(self, spec, seed: int, rows: slice = ALL_ROWS) -> Iterator[dict]:
        chain = self._chain(spec)
        generator = torch.Generator().manual_seed(seed)
        while True:
            # The whole global batch is drawn, so the generator's stream is that of one process;
            # no local name holds the batch, which would keep it alive past its step.
            yield keep_rows(unpadded_batch(markov_corpus.sample_sequences(chain, spec.batch_size, spec.seq_len,
                                                                          generator)), rows)

    def _text_batches(self, spec, documents, rows: slice = ALL_ROWS) -> Iterator[dict]:
        data = self.data(spec)
        tokenizer = _tokenizer(data.tokenizer, self.config(spec).vocab_size)
        return text_corpus.tokenized_batches(documents, tokenizer, spec.batch_size, spec.seq_len, data.pack, rows)

    def _local(self, spec) -> dict:
        """local_text.local_documents' arguments, from the data options."""
        data = self.data(spec)
        return {"path": data.path, "validation_files": data.validation_files,
                "validation_fraction": data.validation_fraction, "any_extension": data.any_extension}

    def train_batches(self, spec, rows: slice = ALL_ROWS) -> Iterator[dict]:
        data = self.data(spec)
        if data.corpus == "markov":
            return self._markov_batches(spec, spec.seed, rows)
        documents = text_corpus.training_documents(data.corpus, self._local(spec), spec.seed)
        batches = self._text_batches(spec, documents, rows)
        ran_out = f"data.corpus {data.corpus!r}: the training text ran out; give more text or fewer steps"
        return _ending_with_error(batches, ran_out)

    def _eval_batches(self, spec) -> Iterator[dict]:
        data = self.data(spec)
        if data.corpus == "markov":
            return self._markov_batches(spec, spec.seed + EVAL_SEED_OFFSET)
        return self._text_batches(spec, text_corpus.load_documents(data.corpus, "validation", self._local(spec)))

    def loss_weight(self, batch) -> torch.Tensor:
        # The causal LM's loss is a mean over the labels after the shift that are not padding.
        return (batch["labels"][:, 1:] != -100).sum()

    def corpus_name(self, spec) -> str | None:
        return self.data(spec).corpus

    @torch.no_grad()
    def evaluate(self, model, spec) -> Evaluation:
        """Token-weighted mean loss over a fixed budget of predicted tokens, and its perplexity.

        The budget is data.eval_tokens, by default eval_batches full batches; a finite validation
        split shorter than the budget is read to its end.
        """
        if spec.eval_batches == 0:
            return Evaluation()
        budget_tokens = self.data(spec).eval_tokens or spec.eval_batches * spec.batch_size * (spec.seq_len - 1)
        model.eval()
        device = next(model.parameters()).device
        total_loss, total_predicted = 0.0, 0
        for batch in self._eval_batches(spec):
            if total_predicted >= budget_tokens:
                break
            batch = {k: v.to(device) for k, v in batch.items()}
            # Each sequence predicts all its non-pad tokens but the first: weight by that count.
            predicted = int((batch["labels"][:, 1:] != -100).sum())
            if predicted == 0:
                continue
            total_loss += float(model(**batch).loss) * predicted
            total_predicted += predicted
        model.train()
        if total_predicted == 0:
            raise ValueError(f"data.corpus {self.data(spec).corpus!r}: the validation split holds no text to evaluate")
        eval_loss = total_loss / total_predicted
        # exp overflows a float above ~709.78 nats: such a model is recorded diverged, its figures kept.
        perplexity = math.exp(eval_loss) if eval_loss < math.log(sys.float_info.max) else math.inf
        return Evaluation(eval_loss=eval_loss, perplexity=perplexity, eval_tokens=total_predicted)

    def uniform_loss(self, spec) -> float | None:
        return math.log(self.config(spec).vocab_size)

    def loss_floor(self, spec) -> float | None:
        if self.data(spec).corpus != "markov":
            return None
        return markov_corpus.entropy_rate_nats(self._chain(spec))
