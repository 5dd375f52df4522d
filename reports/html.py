"""index.html: the report's blocks as one self-contained page (plots embedded as base64 PNG,
no scripts, no external files), laid out to fit a laptop screen without scrolling sideways."""

import base64
import html
import re

from reports.document import MISSING, Block, Code, Heading, Image, Table, Text
from reports.speed_noise import UNRELIABLE_MARK

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1280px; margin: 1.5em auto;
       padding: 0 1em; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.6em;
     border-bottom: 1px solid #ddd; } h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
p { margin: 0.4em 0 0.8em; max-width: 75em; }
pre { background: #f6f6f6; padding: 0.6em 0.8em; white-space: pre-wrap; font-size: 12.5px; line-height: 1.6; }
code { background: #f3f3f3; padding: 0 0.25em; border-radius: 3px; font-size: 0.92em; }
.table { overflow-x: auto; margin-bottom: 0.6em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
td:first-child { white-space: nowrap; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f5f5f5; font-weight: 600; }
tr:hover td { background: #fafafa; }
td.failed { color: #b00020; font-weight: 600; }
td.noisy { color: #9a5b00; font-style: italic; }
figure { margin: 0.8em 0 1.6em; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #555; }
"""


def _inline(text: str) -> str:
    """Markdown's `code` and **bold** in escaped HTML."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


NUMBER = re.compile(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?(%|×)?( ± [\d.e+-]+)?")  # not a version like 5.23.0
NOISY = f" {UNRELIABLE_MARK}"


def _cell_class(text: str) -> str:
    if re.fullmatch(r"\d+/\d+ ok; .+", text):  # a row with runs that did not finish ok
        return ' class="failed"'
    if text.endswith(NOISY) and NUMBER.fullmatch(text.removesuffix(NOISY)):
        return ' class="number noisy"'
    return ' class="number"' if NUMBER.fullmatch(text) or text == MISSING else ""


def _table(block: Table) -> str:
    frame = block.frame.astype(object).where(block.frame.notna(), None)
    head = "".join(f"<th>{html.escape(str(name))}</th>" for name in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for value in values:
            text = MISSING if value is None else str(value)
            cells.append(f"<td{_cell_class(text)}>{_inline(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _image(block: Image) -> str:
    data = base64.b64encode(block.path.read_bytes()).decode()
    caption = html.escape(block.caption)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def to_html(blocks: list[Block], title: str) -> str:
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Code):
            body.append(f"<pre>{html.escape(chr(10).join(block.lines))}</pre>")
        elif isinstance(block, Table):
            body.append(_table(block))
        else:
            body.append(_image(block))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
