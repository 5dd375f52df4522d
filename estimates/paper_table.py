"""The paper's analytic memory estimate (GaLore Tables 2 and 6): weights + optimizer states
in BF16, gradients and activations left out, for LLaMA 60M..1B.

The paper gives no formula (GaLore issue #67), so the table is searched: a convention is one
choice on every open question (units, rounding, ranks, model dimensions, vocabulary, tied
head, norms, what GaLore projects and counts, how LoRA's weights are counted), applied to all
20 cells at once. Every combination is tried; the one that reproduces the most cells (to the
paper's two decimals) is reported cell by cell, and so is every cell that no combination
reproduces.
"""

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import product

from core.units import GB, GIB
from estimates.paper_numbers import PAPER_TOTAL_G, PAPER_WEIGHTS_STATES_G
from workloads.sizes import model_config, size_default

BF16_BYTES = 2
SIZES = ("60m", "130m", "350m", "1b")
METHODS = ("full", "galore", "low_rank", "lora", "relora")
TABLE_RANKS = {size: size_default("llama", size, "galore_rank") for size in SIZES}
"""Table 2's r row, which is each size's galore_rank in workloads/sizes.toml."""
SCRIPT_RANKS = {**TABLE_RANKS, "1b": 1024}
"""The repo's run scripts: they differ from Table 2 at 1B only."""
TABLE_D_MODEL = {"60m": 256, "130m": 768, "350m": 1024, "1b": 2048}
"""Table 2's d_model row; the repo's 60M config has hidden size 512."""

# Each open question and its answers, the repo's own setting first: ties between conventions
# go to the one with more of the repo's settings, earlier questions first.
QUESTIONS = {
    "unit": ("G = 10^9 bytes", "G = 2^30 bytes"),
    "two decimals": ("rounded", "truncated", "rounded up"),
    "rank": ("Table 2's r", "the scripts' r (1024 at 1B)"),
    "dimensions": ("the repo's configs", "Table 2's d_model, the configs' MLP width",
                   "Table 2's d_model, MLP width scaled with it"),
    "vocabulary": ("32000 (configs)", "32100 (t5-base tokenizer)"),
    "LM head": ("untied, counted", "tied to the embedding"),
    "norms": ("counted", "left out"),
    "embeddings/head/norms optimizer state": ("two Adam moments", "none counted"),
    "GaLore projects": ("attention and MLP matrices", "every matrix, embeddings and head too"),
    "GaLore projector": ("counted", "not counted"),
    "GaLore moments": ("r x the larger side (the code)", "r x the smaller side"),
    "LoRA weights": ("frozen base + adapters", "full model + the whole low-rank model"),
}
Convention = tuple[int, ...]
"""The index of one answer per question, in QUESTIONS' order."""
CONVENTIONS: list[Convention] = list(product(*(range(len(answers)) for answers in QUESTIONS.values())))
REPO_CONVENTION: Convention = (0,) * len(QUESTIONS)
_CUTS = {
    "rounded": lambda x: round(x, 2),
    "truncated": lambda x: math.floor(x * 100 + 1e-9) / 100,
    "rounded up": lambda x: math.ceil(x * 100 - 1e-9) / 100,
}


_POSITION = {question: index for index, question in enumerate(QUESTIONS)}


def answer(convention: Convention, question: str) -> str:
    return QUESTIONS[question][convention[_POSITION[question]]]


def describe(convention: Convention) -> list[str]:
    """One "question: answer" line per question."""
    return [f"{question}: {answer(convention, question)}" for question in QUESTIONS]


@lru_cache(maxsize=None)
def _shape(size: str, dimensions: str, vocabulary: str) -> tuple[int, int, int, int]:
    """(hidden, intermediate, layers, vocab) of a size under one answer on dimensions and vocabulary."""
    config = model_config("llama", size)
    hidden, intermediate = config["hidden_size"], config["intermediate_size"]
    if dimensions != QUESTIONS["dimensions"][0]:
        if dimensions == QUESTIONS["dimensions"][2]:
            intermediate = round(intermediate * TABLE_D_MODEL[size] / hidden)
        hidden = TABLE_D_MODEL[size]
    vocab = config["vocab_size"] if vocabulary == QUESTIONS["vocabulary"][0] else 32100
    return hidden, intermediate, config["num_hidden_layers"], vocab


def parameters(method: str, size: str, convention: Convention) -> tuple[int, int]:
    """(weights, optimizer state) in parameters: one BF16 value each."""
    hidden, intermediate, layers, vocab = _shape(size, answer(convention, "dimensions"), answer(convention, "vocabulary"))
    matrices = [(hidden, hidden)] * 4 + [(intermediate, hidden)] * 3  # per layer, (out, in)
    embeddings = [(vocab, hidden)] * (1 if answer(convention, "LM head") == "tied to the embedding" else 2)
    norms = (2 * layers + 1) * hidden if answer(convention, "norms") == "counted" else 0
    outside = sum(m * n for m, n in embeddings) + norms
    total = outside + layers * sum(m * n for m, n in matrices)
    if method == "full":
        return total, 2 * total
    rank = (TABLE_RANKS if answer(convention, "rank") == QUESTIONS["rank"][0] else SCRIPT_RANKS)[size]
    factors = layers * sum(rank * (m + n) for m, n in matrices)
    outside_moments = 2 if answer(convention, "embeddings/head/norms optimizer state") == "two Adam moments" else 0
    if method == "low_rank":
        return factors + outside, 2 * factors + outside_moments * outside
    if method in ("lora", "relora"):
        whole_low_rank = answer(convention, "LoRA weights") != QUESTIONS["LoRA weights"][0]
        return total + factors + (outside if whole_low_rank else 0), 2 * factors + outside_moments * outside
    projected = layers * matrices
    if answer(convention, "GaLore projects") != QUESTIONS["GaLore projects"][0]:
        projected, outside = projected + embeddings, norms
    larger_side = answer(convention, "GaLore moments") == QUESTIONS["GaLore moments"][0]
    projector = answer(convention, "GaLore projector") == "counted"
    state = outside_moments * outside
    for m, n in projected:
        moment_side, projector_side = (max(m, n), min(m, n)) if larger_side else (min(m, n), max(m, n))
        state += 2 * rank * moment_side + (rank * projector_side if projector else 0)
    return total, state


@lru_cache(maxsize=None)  # the search asks every cell under every convention, and again for the closest
def figures_g(method: str, size: str, convention: Convention) -> tuple[float, float]:
    """(weights, states) in the convention's G, before cutting to two decimals."""
    gigabyte = GB if answer(convention, "unit") == QUESTIONS["unit"][0] else GIB
    return tuple(BF16_BYTES * count / gigabyte for count in parameters(method, size, convention))


def reproduces(convention: Convention, method: str, size: str) -> bool:
    cut = _CUTS[answer(convention, "two decimals")]
    weights, states = figures_g(method, size, convention)
    return (cut(weights), cut(states)) == PAPER_WEIGHTS_STATES_G[method][SIZES.index(size)]


@dataclass(frozen=True)
class Cell:
    method: str
    size: str
    ours_weights_g: float
    ours_states_g: float
    """Under the best convention, before cutting to two decimals."""
    paper_weights_g: float
    paper_states_g: float
    paper_total_g: float
    reproduced: bool
    """By the best convention."""
    reproduced_by_count: int
    """How many of all the conventions reproduce it."""
    nearest: str
    """The convention closest to the best that reproduces it (its differing answers), or,
    when none does, the one nearest the paper's figures and what it gives."""

    @property
    def ours_total_g(self) -> float:
        return self.ours_weights_g + self.ours_states_g


@dataclass(frozen=True)
class TableSearch:
    best: Convention
    tied: int
    """How many conventions reproduce as many cells as the best."""
    cells: list[Cell]

    @property
    def unreproducible(self) -> list[Cell]:
        return [cell for cell in self.cells if cell.reproduced_by_count == 0]


def _differences(convention: Convention, reference: Convention) -> str:
    changed = [line for line, index, other in zip(describe(convention), convention, reference) if index != other]
    return "; ".join(changed) or "the same"


def search_paper_table() -> TableSearch:
    """Every convention against every cell."""
    cells = [(method, size) for method in METHODS for size in SIZES]
    hits = {convention: [reproduces(convention, *cell) for cell in cells] for convention in CONVENTIONS}
    most = max(sum(row) for row in hits.values())
    best = next(convention for convention in CONVENTIONS if sum(hits[convention]) == most)

    def distance(convention: Convention) -> int:
        return sum(index != other for index, other in zip(convention, best))

    results = []
    for index, (method, size) in enumerate(cells):
        paper_weights, paper_states = PAPER_WEIGHTS_STATES_G[method][SIZES.index(size)]
        reproducing = [convention for convention in CONVENTIONS if hits[convention][index]]
        if reproducing:
            nearest = "by: " + _differences(min(reproducing, key=distance), best)
        else:
            def error(convention):
                weights, states = figures_g(method, size, convention)
                # Answers that do not change this cell tie exactly: keep the best's.
                return abs(weights - paper_weights) + abs(states - paper_states), distance(convention)

            closest = min(CONVENTIONS, key=error)
            nearest = ("closest: {:.3f}/{:.3f} with ".format(*figures_g(method, size, closest))
                       + _differences(closest, best))
        results.append(Cell(method, size, *figures_g(method, size, best), paper_weights, paper_states,
                            PAPER_TOTAL_G[method][SIZES.index(size)], hits[best][index], len(reproducing), nearest))
    return TableSearch(best, sum(sum(row) == most for row in hits.values()), results)


def paper_table_report() -> str:
    """`harness.py estimate --paper-table`: the search, formatted."""
    return format_paper_table(search_paper_table())


def format_paper_table(search: TableSearch) -> str:
    reproduced = sum(cell.reproduced for cell in search.cells)
    lines = [
        "Paper memory estimate (GaLore Tables 2 and 6): weights + optimizer states, BF16, no gradients or "
        "activations.",
        f"Searched {len(CONVENTIONS)} conventions (every combination of the answers below, applied to all "
        f"{len(search.cells)} cells). The best reproduces {reproduced} of {len(search.cells)} cells"
        + (f" ({search.tied} conventions tie; shown: the one closest to the repo's settings):" if search.tied > 1
           else ":"),
        *(f"  {line}" for line in describe(search.best)),
        "",
        f"{'method':<9}{'size':<6}{'best W/S (G)':>15}{'paper W/S (G)':>15}{'best tot':>10}{'paper tot':>10}"
        f"{'best':>6}{'of all':>8}  nearest convention that reproduces the cell (answers differing from the best)",
    ]
    for cell in search.cells:
        lines.append(
            f"{cell.method:<9}{cell.size:<6}"
            f"{cell.ours_weights_g:>7.3f}/{cell.ours_states_g:<7.3f}"
            f"{cell.paper_weights_g:>7.2f}/{cell.paper_states_g:<7.2f}"
            f"{cell.ours_total_g:>10.3f}{cell.paper_total_g:>10.2f}"
            f"{'yes' if cell.reproduced else 'no':>6}{cell.reproduced_by_count:>8}  "
            + (cell.nearest if cell.reproduced_by_count else f"NO CONVENTION REPRODUCES IT; {cell.nearest}")
        )
    missing = ", ".join(f"{cell.method} {cell.size}" for cell in search.unreproducible)
    lines += [
        "",
        f"best: the best convention's figure; of all: how many of the {len(CONVENTIONS)} conventions reproduce "
        "the cell (both figures, to two decimals).",
        f"No convention reproduces {len(search.unreproducible)} of the {len(search.cells)} cells: {missing}.",
    ]
    return "\n".join(lines)
