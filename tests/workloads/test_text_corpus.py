"""Real-text pre-training data on local fixtures in C4's format: loading, padding, packing, errors."""

import itertools
import math

import datasets
import pytest
import torch

from core.spec import RunSpec
from tests.text_fixtures import make_c4_dir, make_tokenizer_dir, sentence
from workloads import text_corpus
from workloads.llama import LlamaPretraining


@pytest.fixture
def tokenizer_dir(tmp_path):
    return make_tokenizer_dir(tmp_path / "tokenizer")


@pytest.fixture
def c4_dir(tmp_path):
    return make_c4_dir(tmp_path / "c4")


def local_spec(c4_dir, tokenizer_dir, **fields) -> RunSpec:
    data = {"corpus": "local", "path": str(c4_dir), "tokenizer": str(tokenizer_dir), **fields.pop("data", {})}
    return RunSpec(workload="llama", size="tiny", method="full", data=data, batch_size=4, seq_len=12, device="cpu", **fields)


def test_padding_is_masked_and_labelled_minus_100(tokenizer_dir):
    tokenizer = text_corpus.load_tokenizer(str(tokenizer_dir), 2048)
    documents = [{"text": sentence(i, words)} for i, words in enumerate([2, 5, 30, 11])]
    batch = next(text_corpus.padded_batches(documents, tokenizer, batch_size=4, seq_len=12))
    assert batch["input_ids"].shape == (4, 12)
    # Words plus </s>, cut at 12: 3, 6, 12 (truncated), 12.
    assert batch["attention_mask"].sum(1).tolist() == [3, 6, 12, 12]
    padding = batch["attention_mask"] == 0
    assert torch.all(batch["input_ids"][padding] == tokenizer.pad_token_id)
    assert torch.all(batch["labels"][padding] == -100)
    assert torch.equal(batch["labels"][~padding], batch["input_ids"][~padding])
    assert batch["input_ids"][0, 2] == tokenizer.eos_token_id


def test_packing_fills_rows_and_keeps_documents_apart(tokenizer_dir):
    tokenizer = text_corpus.load_tokenizer(str(tokenizer_dir), 2048)
    documents = [{"text": sentence(i, 4)} for i in range(12)]  # 12 documents of 5 tokens
    batches = list(text_corpus.packed_batches(documents, tokenizer, batch_size=2, seq_len=10))
    assert len(batches) == 3  # 60 tokens in rows of 2 x 10
    stream = torch.cat([b["input_ids"].flatten() for b in batches])
    expected = torch.tensor([i for d in documents for i in tokenizer(d["text"])["input_ids"]])
    assert torch.equal(stream, expected)
    assert int((stream == tokenizer.eos_token_id).sum()) == 12
    assert all(torch.equal(b["labels"], b["input_ids"]) and bool(b["attention_mask"].all()) for b in batches)


def local(path, **options) -> dict:
    """local_text.local_documents' arguments, the data options' defaults where not given."""
    return {"path": str(path), "validation_files": "*validation*", "validation_fraction": None,
            "any_extension": False, **options}


def test_local_c4_layout_splits_train_and_validation(c4_dir):
    train_texts = [d["text"] for d in text_corpus.training_documents("local", local(c4_dir), seed=0)]
    validation_texts = [d["text"] for d in text_corpus.load_documents("local", "validation", local(c4_dir))]
    assert len(train_texts) == 40 and len(set(train_texts)) == 40
    assert all(t.startswith("doc") for t in train_texts)
    assert len(validation_texts) == 12 and not any(t.startswith("doc") for t in validation_texts)
    # Shuffled, reproducibly for a seed, differently for another.
    assert train_texts != sorted(train_texts, key=lambda t: (t[3], int(t.split()[0].split("x")[1])))
    assert train_texts == [d["text"] for d in text_corpus.training_documents("local", local(c4_dir), seed=0)]
    assert train_texts != [d["text"] for d in text_corpus.training_documents("local", local(c4_dir), seed=1)]


def test_each_rank_keeps_its_rows_of_the_same_global_batches(c4_dir, tokenizer_dir):
    """Padded or packed, the rows two ranks keep are one process's batch, cut in two."""
    workload = LlamaPretraining()
    for pack in (False, True):
        spec = local_spec(c4_dir, tokenizer_dir, data={"pack": pack})
        whole = list(itertools.islice(workload.train_batches(spec), 4))
        halves = [list(itertools.islice(workload.train_batches(spec, slice(rank * 2, rank * 2 + 2)), 4))
                  for rank in range(2)]
        for step, batch in enumerate(whole):
            for name, tensor in batch.items():
                assert torch.equal(torch.cat([halves[0][step][name], halves[1][step][name]]), tensor), (pack, name)


def test_plain_text_directory(tmp_path, tokenizer_dir):
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train.txt").write_text("the cat sat\n\nthe dog ran\n")
    (tmp_path / "text" / "validation.txt").write_text("a red mat\n")
    spec = local_spec(tmp_path / "text", tokenizer_dir)
    batch = next(LlamaPretraining().train_batches(spec))
    assert batch["input_ids"].shape == (2, 12)  # the blank line is skipped; the split is short
    assert batch["attention_mask"].sum().item() == 8


def manual_token_weighted_loss(model, batches) -> float:
    total, count = 0.0, 0
    for batch in batches:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        targets = batch["labels"][:, 1:]
        losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100, reduction="sum")
        total += losses.item()
        count += int((targets != -100).sum())
    return total / count


def test_perplexity_is_exp_of_token_weighted_loss(c4_dir, tokenizer_dir):
    workload = LlamaPretraining()
    spec = local_spec(c4_dir, tokenizer_dir, data={"eval_tokens": 10**6})
    torch.manual_seed(0)
    model = workload.build_model(spec)
    metrics = workload.evaluate(model, spec)
    # The 12 validation documents have 2..13 words plus </s>, cut at 12: very unequal lengths,
    # so a mean of per-batch means (or a count starting at 1) would differ.
    lengths = [min(words + 1, 12) for words in range(2, 14)]
    assert metrics.eval_tokens == sum(length - 1 for length in lengths)
    expected = manual_token_weighted_loss(model, workload._eval_batches(spec))
    assert metrics.eval_loss == pytest.approx(expected, rel=1e-5)
    assert metrics.perplexity == pytest.approx(math.exp(expected), rel=1e-5)


def test_eval_stops_at_token_budget(c4_dir, tokenizer_dir):
    workload = LlamaPretraining()
    spec = local_spec(c4_dir, tokenizer_dir, data={"eval_tokens": 10})
    metrics = workload.evaluate(workload.build_model(spec), spec)
    first_batch_predicted = sum(min(words + 1, 12) - 1 for words in range(2, 6))
    assert metrics.eval_tokens == first_batch_predicted  # one batch reaches 10 predicted tokens


def test_unknown_corpus_is_named():
    spec = RunSpec(workload="llama", size="tiny", method="full", data={"corpus": "pile"})
    with pytest.raises(ValueError, match="data.corpus 'pile' is not known; accepted: markov, c4, local"):
        LlamaPretraining().train_batches(spec)


def test_missing_local_path_is_named(tmp_path, tokenizer_dir):
    spec = local_spec(tmp_path / "nowhere", tokenizer_dir)
    with pytest.raises(FileNotFoundError, match="nowhere' is not a directory"):
        LlamaPretraining().train_batches(spec)


def test_tokenizer_larger_than_model_vocab(tmp_path, c4_dir):
    big = make_tokenizer_dir(tmp_path / "big", extra_words=2100)
    with pytest.raises(ValueError, match="emits token ids up to 2121, but the model's vocab_size is 2048"):
        LlamaPretraining().train_batches(local_spec(c4_dir, big))


def test_special_tokens_above_the_model_vocab_are_allowed(tmp_path):
    """t5-base has 32000 ordinary ids and 100 sentinels above them, for a 32000-row model."""
    directory = make_tokenizer_dir(tmp_path / "sentinels")
    tokenizer = text_corpus.load_tokenizer(str(directory), 2048)
    tokenizer.add_special_tokens({"additional_special_tokens": [f"<extra_id_{i}>" for i in range(100)]})
    tokenizer.save_pretrained(directory)
    assert len(text_corpus.load_tokenizer(str(directory), 25)) == 122  # 22 ordinary tokens fit 25 rows; the 100 sentinels need not


def test_unreachable_hub_says_how_to_use_local_files(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'allenai/c4' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(text_corpus, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match="could not stream allenai/c4 .* data.corpus = 'local', data.path = "):
        text_corpus.load_documents("c4", "train", {})


def test_a_hub_out_of_reach_is_said_at_once(monkeypatch):
    monkeypatch.setattr(text_corpus, "hub_reachable", lambda: False)
    with pytest.raises(RuntimeError, match="streams allenai/c4 from the Hub, which cannot be reached here; point at"):
        text_corpus.load_documents("c4", "train", {})


def test_unreachable_tokenizer_says_how_to_use_a_local_one(tmp_path):
    with pytest.raises(RuntimeError, match="data.tokenizer .* could not be loaded .* data.tokenizer = a local"):
        text_corpus.load_tokenizer(str(tmp_path / "no-tokenizer"), 2048)


def test_empty_validation_split_is_named(tmp_path, tokenizer_dir):
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train.txt").write_text("the cat sat\n")
    (tmp_path / "text" / "validation.txt").write_text("\n\n")
    spec = local_spec(tmp_path / "text", tokenizer_dir)
    workload = LlamaPretraining()
    with pytest.raises(ValueError, match="the validation split holds no text to evaluate"):
        workload.evaluate(workload.build_model(spec), spec)


def test_running_out_of_training_text_is_named(tmp_path, tokenizer_dir):
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train.txt").write_text("the cat sat\n\n" * 6)  # six documents
    (tmp_path / "text" / "validation.txt").write_text("a red mat\n")
    batches = LlamaPretraining().train_batches(local_spec(tmp_path / "text", tokenizer_dir))
    assert [len(next(batches)["input_ids"]) for _ in range(2)] == [4, 2]
    with pytest.raises(ValueError, match="data.corpus 'local': the training text ran out; give more text or fewer steps"):
        next(batches)
