"""Local text as documents: the files of a folder, split into training and validation, each file
read as the documents it holds.

  - .jsonl / .json (optionally .gz): one JSON object per line, its "text" a document (a local
    copy of C4 as it is);
  - a WikiExtractor dump (files such as AA/wiki_00, each `<doc id=... title=...>` ... `</doc>`):
    one document per <doc> element, its title line kept, the tags dropped;
  - any other text (.txt, or every file with `any_extension`): documents separated by blank
    lines, so an article's lines stay together and a blank line ends it.

The validation split is the files whose name matches `validation_files` (C4's "*validation*"),
or, with `validation_fraction`, a fixed fraction of every file's documents, the same whatever
the run's seed (chosen by a hash of the file name and the document's place in it).
"""

import fnmatch
import gzip
import json
import os
import zlib
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import datasets


JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
TEXT_SUFFIXES = (".txt",)
DOCUMENT_SPLIT_SALT = b"local-text-validation"
"""Keys the hash that picks held-out documents: fixed, so validation never moves with a run's seed."""


def _opened(file: str):
    return gzip.open(file, "rt", encoding="utf-8") if file.endswith(".gz") else open(file, encoding="utf-8")


def _paragraph_documents(lines) -> Iterator[str]:
    document: list[str] = []
    for line in lines:
        if line.strip():
            document.append(line.rstrip("\n"))
        elif document:
            yield "\n".join(document)
            document = []
    if document:
        yield "\n".join(document)


def _wikiextractor_documents(lines) -> Iterator[str]:
    document: list[str] | None = None
    for line in lines:
        if line.startswith("<doc "):
            document = []
        elif line.startswith("</doc>"):
            if document:
                yield "\n".join(document).strip()
            document = None
        elif document is not None and line.strip():
            document.append(line.rstrip("\n"))


def documents_of(file: str) -> Iterator[str]:
    """The documents a file holds, by its format (the module docstring)."""
    with _opened(file) as handle:
        if file.endswith(JSON_SUFFIXES):
            for line in handle:
                if line.strip():
                    yield json.loads(line)["text"]
            return
        first = handle.readline()
        lines = _chained(first, handle)
        yield from (_wikiextractor_documents if first.startswith("<doc ") else _paragraph_documents)(lines)


def _chained(first: str, rest) -> Iterator[str]:
    yield first
    yield from rest


def _held_out(file: str, index: int, fraction: float) -> bool:
    key = DOCUMENT_SPLIT_SALT + f"{os.path.basename(file)}:{index}".encode()
    return zlib.crc32(key) / 2**32 < fraction


def _documents(files: list[str], split: str, validation_fraction: float | None) -> Iterator[dict]:
    for file in files:
        for index, text in enumerate(documents_of(file)):
            if validation_fraction is None or _held_out(file, index, validation_fraction) == (split == "validation"):
                yield {"text": text}


def corpus_files(path: str, any_extension: bool) -> list[str]:
    """Every file of the folder the corpus reads (hidden files aside), in a fixed order."""
    files = sorted(os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names
                   if not name.startswith("."))
    return files if any_extension else [file for file in files if file.endswith(JSON_SUFFIXES + TEXT_SUFFIXES)]


def split_files(path: str, split: str, validation_files: str, validation_fraction: float | None,
                any_extension: bool) -> list[str]:
    """The files one split reads; FileNotFoundError in one line where there are none."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"data.path {path!r} is not a directory")
    files = corpus_files(path, any_extension)
    if not files:
        others = corpus_files(path, any_extension=True)
        hint = (f"; it holds {len(others)} files of other names ({', '.join(os.path.basename(f) for f in others[:3])}"
                f"{', ...' if len(others) > 3 else ''}): data.any_extension = true reads them as text") if others else ""
        raise FileNotFoundError(f"data.path {path!r} holds no .txt or .jsonl(.gz) files{hint}")
    if validation_fraction is not None:
        return files
    chosen = [file for file in files
              if fnmatch.fnmatch(os.path.basename(file), validation_files) == (split == "validation")]
    if not chosen:
        where = f"named {validation_files!r}" if split == "validation" else f"not named {validation_files!r}"
        raise FileNotFoundError(f"data.path {path!r} holds no {split} files ({where}; data.validation_files picks "
                                "them by name, data.validation_fraction holds out documents instead)")
    return chosen


def local_documents(path: str, split: str, validation_files: str, validation_fraction: float | None,
                    any_extension: bool) -> "datasets.IterableDataset":
    """The split as a stream of {"text": ...} documents (shuffled by the caller)."""
    import datasets  # here: with pandas and pyarrow it takes a second, and Markov and synthetic runs never need it

    files = split_files(path, split, validation_files, validation_fraction, any_extension)
    return datasets.IterableDataset.from_generator(
        _documents, gen_kwargs={"files": files, "split": split, "validation_fraction": validation_fraction})


def first_document(path: str, split: str, validation_files: str, validation_fraction: float | None,
                   any_extension: bool) -> str | None:
    """The split's first non-empty document, or None where it holds none: what preflight asks."""
    files = split_files(path, split, validation_files, validation_fraction, any_extension)
    return next((document["text"] for document in _documents(files, split, validation_fraction)
                 if document["text"].strip()), None)
