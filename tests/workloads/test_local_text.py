"""Local text keeps its documents: WikiExtractor's <doc> files, blank-line-separated .txt, JSON
lines; every file of a folder on request; validation by file name or a held-out fraction."""

import pytest

from workloads import local_text

WIKI = """<doc id="12" url="https://en.wikipedia.org/wiki?curid=12" title="Anarchism">
Anarchism

Anarchism is a political philosophy.
It is sceptical of authority.
</doc>
<doc id="25" url="https://en.wikipedia.org/wiki?curid=25" title="Autism">
Autism

Autism is a developmental disorder.
</doc>
"""


def documents(path, split="train", **options) -> list[str]:
    settings = {"validation_files": "*validation*", "validation_fraction": None, "any_extension": False, **options}
    return [document["text"] for document in local_text.local_documents(str(path), split, **settings)]


def test_a_wikiextractor_dump_gives_one_document_per_article(tmp_path):
    (tmp_path / "AA").mkdir()
    (tmp_path / "AA" / "wiki_00").write_text(WIKI)
    with pytest.raises(FileNotFoundError, match=r"holds no .txt or .jsonl\(.gz\) files; it holds 1 files of other "
                                                r"names \(wiki_00\): data.any_extension = true reads them as text"):
        documents(tmp_path)
    assert documents(tmp_path, any_extension=True, validation_fraction=0.01) == [
        "Anarchism\nAnarchism is a political philosophy.\nIt is sceptical of authority.",
        "Autism\nAutism is a developmental disorder.",
    ]


def test_a_text_file_holds_documents_separated_by_blank_lines(tmp_path):
    (tmp_path / "train.txt").write_text("A title\nits first line\nits second line\n\n\nAnother one\nwith a line\n")
    (tmp_path / "validation.txt").write_text("held out\n")
    assert documents(tmp_path) == ["A title\nits first line\nits second line", "Another one\nwith a line"]
    assert documents(tmp_path, "validation") == ["held out"]


def test_a_held_out_fraction_splits_documents_the_same_whatever_the_seed(tmp_path):
    (tmp_path / "all.txt").write_text("".join(f"document {i}\n\n" for i in range(200)))
    train = documents(tmp_path, validation_fraction=0.1)
    validation = documents(tmp_path, "validation", validation_fraction=0.1)
    assert sorted(train + validation, key=lambda text: int(text.split()[1])) == [f"document {i}" for i in range(200)]
    assert not set(train) & set(validation) and 8 <= len(validation) <= 35  # about a tenth of 200
    assert validation == documents(tmp_path, "validation", validation_fraction=0.1)


def test_a_missing_validation_split_names_the_pattern_and_the_other_way(tmp_path):
    (tmp_path / "train.txt").write_text("a document\n")
    with pytest.raises(FileNotFoundError, match=r"holds no validation files \(named '\*validation\*'; "
                                                r"data.validation_files picks them by name, data.validation_fraction"):
        documents(tmp_path, "validation")
    (tmp_path / "heldout.txt").write_text("another\n")
    assert documents(tmp_path, "validation", validation_files="heldout*") == ["another"]
