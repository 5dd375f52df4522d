"""LLaMA causal-LM pre-training from random init, as in the GaLore paper.

data.corpus picks the text: "markov" (default; generated offline, with a known loss floor),
"c4" (allenai/c4 "en" streamed from the Hub) or "local" (data.path, a directory of text files).
"""

import math
from functools import cache
from typing import Iterator

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from suites.models import model_config
from workloads.base import TransformersLossMixin
from workloads import markov_corpus, text_corpus

CORPORA = ("markov", "c4", "local")
EVAL_SEED_OFFSET = 1_000_003  # held-out sequences come from a stream no training seed draws


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


class LlamaPretraining(TransformersLossMixin):
    target_modules = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    head_modules = ()

    def config(self, spec) -> LlamaConfig:
        values = model_config("llama", spec.size)
        return LlamaConfig(
            **values,
            max_position_embeddings=max(spec.seq_len, 1024),
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            pad_token_id=0,
        )

    def build_model(self, spec) -> torch.nn.Module:
        return LlamaForCausalLM(self.config(spec))

    def _corpus(self, spec) -> str:
        corpus = spec.data.get("corpus", "markov")
        if corpus not in CORPORA:
            raise ValueError(f"data.corpus {corpus!r} is not known; accepted: {', '.join(CORPORA)}")
        return corpus

    def _chain(self, spec) -> markov_corpus.MarkovChain:
        model_vocab_size = self.config(spec).vocab_size
        # data.vocab narrows the chain to fewer token ids than the model has, for quick learning.
        chain_vocab_size = spec.data.get("vocab", model_vocab_size)
        if not 2 <= chain_vocab_size <= model_vocab_size:
            raise ValueError(
                f"data.vocab {chain_vocab_size} must lie in 2..{model_vocab_size} (the model's vocab_size)"
            )
        return _markov_chain(chain_vocab_size, spec.data.get("branching", 8), spec.data.get("chain_seed", 1234))

    def _markov_batches(self, spec, seed: int) -> Iterator[dict]:
        chain = self._chain(spec)
        generator = torch.Generator().manual_seed(seed)
        while True:
            input_ids = markov_corpus.sample_sequences(chain, spec.batch_size, spec.seq_len, generator)
            yield {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids}

    def _text_batches(self, spec, documents) -> Iterator[dict]:
        tokenizer = _tokenizer(spec.data.get("tokenizer"), self.config(spec).vocab_size)
        pack = spec.data.get("pack", False)
        return text_corpus.tokenized_batches(documents, tokenizer, spec.batch_size, spec.seq_len, pack)

    def train_batches(self, spec) -> Iterator[dict]:
        if self._corpus(spec) == "markov":
            return self._markov_batches(spec, spec.seed)
        batches = self._text_batches(spec, text_corpus.training_documents(spec.data, spec.seed))
        ran_out = f"data.corpus {spec.data['corpus']!r}: the training text ran out; give more text or fewer steps"
        return _ending_with_error(batches, ran_out)

    def _eval_batches(self, spec) -> Iterator[dict]:
        if self._corpus(spec) == "markov":
            return self._markov_batches(spec, spec.seed + EVAL_SEED_OFFSET)
        return self._text_batches(spec, text_corpus.load_documents(spec.data, "validation"))

    @torch.no_grad()
    def evaluate(self, model, spec) -> dict:
        """Token-weighted mean loss over a fixed budget of predicted tokens, and its perplexity.

        The budget is data.eval_tokens, by default eval_batches full batches; a finite validation
        split shorter than the budget is read to its end.
        """
        if spec.eval_batches == 0:
            return {}
        budget_tokens = spec.data.get("eval_tokens", spec.eval_batches * spec.batch_size * (spec.seq_len - 1))
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
            raise ValueError(f"data.corpus {self._corpus(spec)!r}: the validation split holds no text to evaluate")
        eval_loss = total_loss / total_predicted
        return {"eval_loss": eval_loss, "perplexity": math.exp(eval_loss), "eval_tokens": total_predicted}

    def loss_floor(self, spec) -> float | None:
        if self._corpus(spec) != "markov":
            return None
        return markov_corpus.entropy_rate_nats(self._chain(spec))
