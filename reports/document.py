"""A report as a list of blocks (headings, text, tables, images), rendered once to Markdown
here and once to HTML in reports/html.py, so report.md and index.html always hold the same tables."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MISSING = "–"
"""What a figure a row does not have shows as (a floor, a task score, a failed run's loss)."""


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str
    """A paragraph; `code` and **bold** as in Markdown."""


@dataclass
class Code:
    lines: list[str]
    """Commands, one a line, shown verbatim."""


@dataclass
class Table:
    frame: pd.DataFrame
    """Cells already formatted as text; None for a missing figure."""


@dataclass
class Image:
    path: Path
    """The PNG, in the report's folder."""
    caption: str


Block = Heading | Text | Code | Table | Image


def table_markdown(frame: pd.DataFrame) -> str:
    shown = frame.astype(object).where(frame.notna(), None)
    return shown.to_markdown(index=False, disable_numparse=True, missingval=MISSING)


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Text):
            parts.append(block.text)
        elif isinstance(block, Code):
            parts.append("```sh\n" + "\n".join(block.lines) + "\n```")
        elif isinstance(block, Table):
            parts.append(table_markdown(block.frame))
        else:
            parts.append(f"![{block.caption}]({block.path.name})")
    return "\n\n".join(parts) + "\n"
