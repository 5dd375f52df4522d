"""Real text for pre-training: C4 streamed from the Hub, or local text/JSONL files, tokenized.

As in the GaLore reference (which follows ReLoRA): `allenai/c4` "en" streamed, shuffled with seed
42, each document truncated or padded to the sequence length with padding labelled -100, no
packing. Packing (documents concatenated and cut into full sequences) is an option.

The stream is the same on every data-parallel rank: each rank keeps its rows of every global
batch (training/parallel.py, the one owner of rank sharding), so a run on N ranks reads exactly
the sequences of a one-process run. (The reference splits the documents by rank instead, which
gives every rank other sequences than one process would see.)
"""

from typing import TYPE_CHECKING, Iterator

import torch
from transformers import AutoTokenizer

from workloads.base import ALL_ROWS, keep_rows, unpadded_batch
from workloads.hub import hub_reachable, lookup_options
from workloads.local_text import local_documents

if TYPE_CHECKING:
    import datasets

C4_HUB_NAME = "allenai/c4"
DEFAULT_TOKENIZER = "t5-base"
SHUFFLE_SEED = 42  # the reference's; a run's seed is added so seed 0 reads C4 in its order
SHUFFLE_BUFFER_DOCUMENTS = 10_000
LOCAL_HINT = (
    "point at local files instead: data.corpus = 'local', data.path = a directory of .txt or .jsonl(.gz) files "
    "with a 'text' field (validation files have 'validation' in their name, as C4's do), "
    "data.tokenizer = a local tokenizer directory"
)


def load_tokenizer(name_or_path: str | None, model_vocab_size: int, hint: str = LOCAL_HINT):
    """The tokenizer (t5-base unless named), checked to emit only ids the model has rows for.

    `hint` ends the error line when it cannot be loaded: how to point at local files instead.
    """
    name_or_path = name_or_path or DEFAULT_TOKENIZER
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **lookup_options())
    except (OSError, ValueError) as error:  # ValueError: a folder without a tokenizer's files
        reason = " ".join(line.strip() for line in str(error).splitlines() if line.strip())  # one line
        raise RuntimeError(f"data.tokenizer {name_or_path!r} could not be loaded ({reason}); {hint}") from None
    # Special tokens such as t5-base's 100 <extra_id_N> sentinels sit above its 32000 ordinary
    # ids and never come out of plain text, so only ordinary tokens must fit the model.
    special = set(tokenizer.all_special_tokens)
    highest_text_id = max(i for token, i in tokenizer.get_vocab().items() if token not in special)
    if highest_text_id >= model_vocab_size:
        raise ValueError(
            f"data.tokenizer {name_or_path!r} emits token ids up to {highest_text_id}, "
            f"but the model's vocab_size is {model_vocab_size}; pick a tokenizer with at most {model_vocab_size} tokens"
        )
    if tokenizer.pad_token is None:
        # Padding positions are masked out of attention and labels, so any id will do.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_documents(corpus: str, split: str, local: dict) -> "datasets.IterableDataset":
    """The split as a stream of {"text": ...} documents: C4 from the Hub (corpus "c4") or the
    files of a local folder (corpus "local"; `local`: local_text.local_documents' arguments)."""
    import datasets  # here: with pandas and pyarrow it takes a second, and Markov and synthetic runs never need it

    if corpus == "c4":
        if not hub_reachable():
            raise RuntimeError(f"data.corpus 'c4' streams {C4_HUB_NAME} from the Hub, which cannot be reached here; "
                               f"{LOCAL_HINT}")
        try:
            return datasets.load_dataset(C4_HUB_NAME, "en", split=split, streaming=True)
        except OSError as error:  # ConnectionError and the Hub's own errors are OSErrors
            raise RuntimeError(
                f"data.corpus 'c4': could not stream {C4_HUB_NAME} from the Hub ({error}); {LOCAL_HINT}"
            ) from None
    return local_documents(split=split, **local)


def training_documents(corpus: str, local: dict, seed: int) -> "datasets.IterableDataset":
    """The shuffled training documents, the same stream on every rank."""
    return load_documents(corpus, "train", local).shuffle(seed=SHUFFLE_SEED + seed, buffer_size=SHUFFLE_BUFFER_DOCUMENTS)


def _texts(documents) -> Iterator[str]:
    for document in documents:
        if document["text"].strip():
            yield document["text"]


def padded_batches(documents, tokenizer, batch_size: int, seq_len: int, rows: slice = ALL_ROWS) -> Iterator[dict]:
    """One document per row, truncated or padded to seq_len; padding is masked and labelled -100.
    Only `rows` of each batch of batch_size documents are tokenized.

    A last, incomplete batch is yielded too, so a finite split is read to its end; not when only
    some rows are kept (a rank's share of it could be empty).
    """
    texts = _texts(documents)
    while True:
        chunk = [text for _, text in zip(range(batch_size), texts)]
        if not chunk or (rows != ALL_ROWS and len(chunk) < batch_size):
            return
        # No local name holds the batch, which would keep it alive past its step.
        yield _padded_batch(tokenizer, chunk[rows], seq_len)


def _padded_batch(tokenizer, texts: list[str], seq_len: int) -> dict:
    encoded = tokenizer(texts, max_length=seq_len, truncation=True, padding="max_length", return_tensors="pt")
    labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}


def packed_batches(documents, tokenizer, batch_size: int, seq_len: int, rows: slice = ALL_ROWS) -> Iterator[dict]:
    """Documents, each ending in the end-of-text token, concatenated and cut into full rows, of
    which `rows` of each batch are kept (where rows fall depends on every document's length, so
    every document is tokenized)."""
    buffer: list[int] = []
    rows_tokens = batch_size * seq_len
    for text in _texts(documents):
        ids = tokenizer(text)["input_ids"]
        # t5-base appends </s> itself; GPT-style tokenizers do not, and documents must stay apart.
        if not ids or ids[-1] != tokenizer.eos_token_id:
            ids.append(tokenizer.eos_token_id)
        buffer.extend(ids)
        while len(buffer) >= rows_tokens:
            # No local name holds the batch, which would keep it alive past its step.
            yield keep_rows(unpadded_batch(torch.tensor(buffer[:rows_tokens]).view(batch_size, seq_len)), rows)
            del buffer[:rows_tokens]


def tokenized_batches(documents, tokenizer, batch_size: int, seq_len: int, pack: bool,
                      rows: slice = ALL_ROWS) -> Iterator[dict]:
    make = packed_batches if pack else padded_batches
    return make(documents, tokenizer, batch_size, seq_len, rows)
