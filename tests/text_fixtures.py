"""Small local stand-ins in the Hub's formats: a tokenizer directory and C4-style shards."""

import gzip
import json
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

WORDS = "the cat dog sat ran on a mat log and then it was far near big small red blue".split()


def make_tokenizer_dir(directory: Path, extra_words: int = 0) -> Path:
    """A word-level tokenizer saved as Hub-style files; ends every text with </s>, like t5-base."""
    specials = ["<pad>", "</s>", "<unk>"]
    words = WORDS + [f"w{i}" for i in range(extra_words)]
    vocab = {token: i for i, token in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", 1)]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(directory)
    return directory


def sentence(index: int, words: int) -> str:
    return " ".join(WORDS[(index * 7 + k * 3) % len(WORDS)] for k in range(words))


def write_c4_shard(path: Path, texts: list[str]):
    """One gzipped JSON-lines shard with C4's fields."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"text": text, "timestamp": "2019-04-25T12:57:54Z", "url": f"https://example.com/{i}"}) + "\n")


def make_c4_dir(directory: Path) -> Path:
    """C4's layout (en/c4-train.NNNNN-of-NNNNN.json.gz, en/c4-validation...), 2 train shards of 20 docs."""
    english = directory / "en"
    for shard in range(2):
        texts = [f"doc{shard}x{i} " + sentence(shard * 20 + i, 3 + (i * 5) % 17) for i in range(20)]
        write_c4_shard(english / f"c4-train.{shard:05d}-of-00002.json.gz", texts)
    write_c4_shard(english / "c4-validation.00000-of-00001.json.gz", [sentence(100 + i, 2 + i) for i in range(12)])
    return english
