"""LLaMA causal-LM pre-training from random init, as in the GaLore paper."""

import math
from functools import cache
from typing import Iterator

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from suites.models import model_config
from workloads import markov_corpus

CORPORA = ("markov",)
EVAL_SEED_OFFSET = 1_000_003  # held-out sequences come from a stream no training seed draws


@cache
def _markov_chain(vocab_size: int, branching: int, chain_seed: int) -> markov_corpus.MarkovChain:
    return markov_corpus.make_chain(vocab_size, branching=branching, seed=chain_seed)


class LlamaPretraining:
    target_modules = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

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

    def _chain(self, spec) -> markov_corpus.MarkovChain:
        corpus = spec.data.get("corpus", "markov")
        if corpus not in CORPORA:
            raise ValueError(f"data.corpus {corpus!r} is not known; accepted: {', '.join(CORPORA)}")
        return _markov_chain(
            self.config(spec).vocab_size, spec.data.get("branching", 8), spec.data.get("chain_seed", 1234)
        )

    def _batches(self, spec, seed: int) -> Iterator[dict]:
        chain = self._chain(spec)
        generator = torch.Generator().manual_seed(seed)
        while True:
            input_ids = markov_corpus.sample_sequences(chain, spec.batch_size, spec.seq_len, generator)
            yield {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids}

    def train_batches(self, spec) -> Iterator[dict]:
        return self._batches(spec, spec.seed)

    def loss(self, model, batch) -> torch.Tensor:
        # transformers shifts labels by one and ignores -100 (padding) itself.
        return model(**batch).loss

    def count_tokens(self, batch) -> int:
        return int(batch["attention_mask"].sum())

    @torch.no_grad()
    def evaluate(self, model, spec) -> dict:
        if spec.eval_batches == 0:
            return {}
        model.eval()
        batches = self._batches(spec, spec.seed + EVAL_SEED_OFFSET)
        device = next(model.parameters()).device
        total_loss, total_predicted = 0.0, 0
        for _ in range(spec.eval_batches):
            batch = {k: v.to(device) for k, v in next(batches).items()}
            # Each sequence predicts all its non-pad tokens but the first: weight by that count.
            predicted = int((batch["labels"][:, 1:] != -100).sum())
            total_loss += float(model(**batch).loss) * predicted
            total_predicted += predicted
        model.train()
        eval_loss = total_loss / total_predicted
        return {"eval_loss": eval_loss, "perplexity": math.exp(eval_loss)}

    def loss_floor(self, spec) -> float | None:
        return markov_corpus.entropy_rate_nats(self._chain(spec))
