"""Will it fit on my card? The largest micro-batch per method whose traced peak, plus an
allowance for what the tracker cannot see, fits a memory budget.

Activation memory grows close to linearly with the batch, so the search traces two batch
sizes, extrapolates the line through their forward-and-backward peaks (the optimizer step's
does not grow with the batch) to the budget and confirms the answer b with traces at b and
b+1; where a confirmation disagrees it extrapolates again from the nearest traces, and
bisects where the peak is flat in the batch (the optimizer step, not the activations, sets
it). Every trace steps one fake-tensor training, built once per method (estimates/traced.py).
"""

import multiprocessing
import re
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import torch

from core.spec import RunSpec
from core.statuses import RecordKind, Status
from core.units import BYTE_UNITS, GB, GIB
from estimates import EstimateRequest
from estimates.by_depth import FULL_TRACE_NOTE, STRUCTURE_NOTE, fill_fake_tensor_caches, structure_training
from estimates.traced import describe_precision, traced_training
from launchers.packages import recorded_packages
from meters.environment import environment
from meters.tracker import summarize
from results.records import append_record
from results.schema import Memory, Record
from training.setting import run_setting

CUDA_CONTEXT_BYTES = GIB
"""Allowance for what a CUDA process holds outside the allocator: the context and kernels
(about 0.5 GiB on recent drivers with lazy loading) and cuBLAS workspaces."""
FRAGMENTATION_FRACTION = 0.05
"""Allowance for the caching allocator's reserved-but-unallocated blocks, as a fraction of the
traced peak (reserved commonly runs a few percent above max_memory_allocated)."""
ALLOWANCE = (
    f"allowance: {CUDA_CONTEXT_BYTES / GIB:.1f} GiB CUDA context and workspaces plus "
    f"{FRAGMENTATION_FRACTION:.0%} of the traced peak for allocator fragmentation"
)
MAX_BATCH = 1 << 16
"""The search's upper bound, for a peak that does not grow with the batch."""

_UNITS = {name.lower(): (name, size) for name, size in BYTE_UNITS.items()}


@dataclass(frozen=True)
class Budget:
    """A memory budget as given and in bytes."""

    bytes: int
    text: str
    """As given, normalised: "24 GB"."""

    @property
    def peak_limit_bytes(self) -> int:
        """The highest traced peak that fits once the allowance is added."""
        return int((self.bytes - CUDA_CONTEXT_BYTES) / (1 + FRAGMENTATION_FRACTION))

    def describe(self) -> str:
        unit = "decimal, 1 GB = 1e9 bytes" if self.text.endswith(("GB", "MB")) else "binary, 1 GiB = 2^30 bytes"
        return f"budget {self.text} = {self.bytes / GIB:.2f} GiB = {self.bytes / GB:.2f} GB ({unit})"


def parse_budget(text: str) -> Budget:
    """A budget such as "24GB", "22.5GiB" or "800 MiB"; ValueError in one line otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([A-Za-z]+)\s*", text)
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if unit is None or float(match.group(1)) <= 0:
        raise ValueError(f"budget {text!r} is not a positive size; write e.g. 24GB or 22.5GiB (units: GB, GiB, MB, MiB)")
    return Budget(int(float(match.group(1)) * unit[1]), f"{match.group(1)} {unit[0]}")


def largest_batch(peak_bytes_at: Callable[[int], int], limit_bytes: int, max_batch: int = MAX_BATCH,
                  growth_bytes_at: Callable[[int], int] | None = None) -> int:
    """The largest batch b with peak_bytes_at(b) <= limit_bytes, 0 when batch 1 does not fit,
    for a peak that does not fall as the batch grows. Asks for batches 1 and 2, extrapolates,
    and stops once it has seen some b fit and b+1 not.

    growth_bytes_at (default: the peak) is what the lines are drawn through: the part of the
    peak that grows with the batch. A peak set by the optimizer step is flat at small batches
    and says nothing about where the activations will cross the limit; the forward and
    backward's peak does. It is asked only of batches the peak was asked of."""
    peaks: dict[int, int] = {}
    growth: dict[int, int] = {}

    def peak(batch: int) -> int:
        if batch not in peaks:
            peaks[batch] = peak_bytes_at(batch)
            growth[batch] = growth_bytes_at(batch) if growth_bytes_at else peaks[batch]
        return peaks[batch]

    if peak(1) > limit_bytes:
        return 0
    peak(2)
    guess = _extrapolate(1, 2, growth, limit_bytes)
    while True:
        fits = max(batch for batch, bytes_ in peaks.items() if bytes_ <= limit_bytes)
        fails = min((batch for batch, bytes_ in peaks.items() if bytes_ > limit_bytes), default=max_batch + 1)
        if fails - fits == 1:
            return fits
        if len(peaks) > 6:  # the line keeps missing (a kink between traces): bisect
            guess = (fits + fails) // 2
        guess = min(max(guess, fits + 1), fails - 1)
        peak(guess)
        # Extrapolate again from the two traces nearest the last guess: once the confirmation
        # at b or b+1 is done, that line points at the other.
        low, high = sorted(sorted(peaks, key=lambda batch: abs(batch - guess))[:2])
        guess = _extrapolate(low, high, growth, limit_bytes)


def _extrapolate(low: int, high: int, bytes_at: dict[int, int], limit_bytes: int) -> int:
    """The largest batch under the limit on the line through the bytes at low and high (a
    flat line: as large as allowed)."""
    slope_bytes = bytes_at[high] - bytes_at[low]
    if slope_bytes <= 0:
        return MAX_BATCH
    return low + (limit_bytes - bytes_at[low]) * (high - low) // slope_bytes


@dataclass
class Fit:
    """One method's answer under one budget: the largest batch, and its traced steps."""

    spec: RunSpec
    """The method's spec at the answer's batch (batch 1 when the answer is 0); with several ranks
    its batch_size is the global one, the answer's times the ranks."""
    budget: Budget
    """The budget the answer is for."""
    batch_size: int
    """The largest micro-batch (per rank, with several) that fits; 0 when batch 1 does not."""
    peak_bytes: int
    """The traced peak at that batch (batch 1 when the answer is 0), refresh extra included,
    without the allowance."""
    refresh_extra_bytes: int
    """What the first step (a GaLore refresh) held above the steady step at batch 1."""
    memory: Memory
    """Tracker figures of the steps traced for it, as traced: the first step (batch 1; creates
    the optimizer state, GaLore's refresh) and the steady step at that batch. peak_bytes, not
    these, is what the answer compares with the budget."""
    notes: list[str]
    """Assumptions and substitutions of the traces."""
    traced_batches: list[int]
    """The batch sizes traced for this method up to this answer, in order."""
    started_at: str
    """When the search started, ISO 8601 in UTC."""
    wall_s: float
    """Seconds the method's search took up to this answer."""


def fit_batch(spec: RunSpec, budgets: list[Budget], full_trace: bool = False) -> list[Fit]:
    """The largest micro-batch of `spec` under each budget, traced on one fake training (the
    traces of one budget's search serve the next): by structure (estimates/by_depth.py), or
    the whole model with full_trace.

    Step 0 runs at batch 1: it creates the optimizer state (and, for GaLore, computes every
    projector: a refresh step). Every later step runs with that state at the batch asked. A
    batch's peak is its steady step's peak plus what step 0 held above the steady step at
    batch 1 (the refresh's extra), so that the answer survives refresh steps too. With several
    ranks (FSDP2) the batch searched is each rank's micro-batch, and the figures one rank's.
    """
    started = time.time()
    started_at = datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds")
    fits = []
    ranks = spec.world_size

    def spec_at(batch_per_rank: int) -> RunSpec:
        return replace(spec, batch_size=batch_per_rank * ranks)

    with (traced_training if full_trace else structure_training)(spec_at(1)) as training:
        first = training.step(ranks)
        steady = {1: training.step(ranks)}
        refresh_extra_bytes = max(0, first.peak_bytes - steady[1].peak_bytes)

        def peak_bytes_at(batch: int) -> int:
            if batch not in steady:
                steady[batch] = training.step(batch * ranks)
            return steady[batch].peak_bytes + refresh_extra_bytes

        def growth_bytes_at(batch: int) -> int:  # a batch already traced by peak_bytes_at
            return steady[batch].outside_optimizer_peak_bytes + refresh_extra_bytes

        for budget in budgets:
            batch = largest_batch(peak_bytes_at, budget.peak_limit_bytes, growth_bytes_at=growth_bytes_at)
            shown = max(batch, 1)
            fits.append(Fit(spec_at(shown), budget, batch, peak_bytes_at(shown), refresh_extra_bytes,
                            Memory.of(summarize([first, steady[shown]])), training.notes, list(steady), started_at,
                            time.time() - started))
    return fits


def total_bytes(peak_bytes: int) -> int:
    """A traced peak with the allowance added: what the card must hold."""
    return int(peak_bytes * (1 + FRAGMENTATION_FRACTION)) + CUDA_CONTEXT_BYTES


def format_fits(fits: list[Fit], wall_s: float) -> str:
    """A fit table per budget: per method the largest batch, its peak, tokens per step and headroom."""
    lines = []
    for budget in dict.fromkeys(fit.budget for fit in fits):
        ranks = fits[0].spec.world_size
        lines += [
            f"Largest micro-batch per method: {budget.describe()}"
            + (f" per rank, FSDP2 on {ranks} ranks (batch and memory per rank, tokens per step of all)"
               if ranks > 1 else ""),
            f"{'method':<24}{'ckpt':>5}{'batch':>7}{'peak GiB':>10}{'refresh+':>10}{'+allow GiB':>12}"
            f"{'tokens/step':>13}{'headroom GiB':>14}  precision   traced batches",
        ]
        for fit in (fit for fit in fits if fit.budget == budget):
            total = total_bytes(fit.peak_bytes)
            tokens = fit.batch_size * fit.spec.world_size * fit.spec.seq_len * fit.spec.grad_accum
            headroom = f"{(budget.bytes - total) / GIB:>14.2f}" if fit.batch_size else f"{'none':>14}"
            lines.append(
                f"{fit.spec.method:<24}{'yes' if fit.spec.activation_checkpointing else 'no':>5}{fit.batch_size:>7}"
                f"{fit.peak_bytes / GIB:>10.2f}{fit.refresh_extra_bytes / GIB:>10.2f}{total / GIB:>12.2f}"
                f"{tokens:>13}{headroom}  {fit.spec.policy.name:<12}{','.join(map(str, fit.traced_batches))}"
            )
        lines.append("")
    lines += [
        *dict.fromkeys(f"{fit.spec.size}: {describe_precision(fit.spec.policy)}" for fit in fits),
        ALLOWANCE,
        "peak: the steady step's at that batch plus refresh+ (what the first step, which creates the optimizer "
        "state and GaLore's projectors, held above the steady step); batch 0: even batch 1 does not fit (peak at "
        "batch 1 shown)",
    ]
    # How each method was traced (every budget's fit of it says the same): by structure or in full.
    traced_as = {fit.spec.method + (" ckpt" if fit.spec.activation_checkpointing else ""): note
                 for fit in fits for note in fit.notes if note.startswith((STRUCTURE_NOTE, FULL_TRACE_NOTE))}
    in_full = {method: note for method, note in traced_as.items() if note.startswith(FULL_TRACE_NOTE)}
    by_structure = [note for note in traced_as.values() if note.startswith(STRUCTURE_NOTE)]
    if by_structure:
        lines.append(f"{len(by_structure)} traced by structure: {by_structure[0]}")
    if in_full:
        lines.append(f"{len(in_full)} traced in full:")
        lines += [f"  {method}: {note.removeprefix(FULL_TRACE_NOTE).strip()}" for method, note in in_full.items()]
    lines.append(f"traced in {wall_s:.0f} s wall")
    return "\n".join(lines)


def fit_all(specs: list[RunSpec], budgets: list[Budget], jobs: int,
            full_trace: bool = False) -> tuple[list[Fit], float]:
    """fit_batch of every spec, `jobs` at once in forked processes (each search is one
    process's work: traces are single-threaded Python), ordered by budget then spec, and the
    wall seconds it took."""
    started = time.time()
    if not full_trace:
        fill_fake_tensor_caches(specs[0])
    with ProcessPoolExecutor(max(1, min(jobs, len(specs))), mp_context=multiprocessing.get_context("fork")) as pool:
        per_spec = list(pool.map(fit_batch, specs, [budgets] * len(specs), [full_trace] * len(specs)))
    return [fits[index] for index in range(len(budgets)) for fits in per_spec], time.time() - started


def fit_record(fit: Fit, suite: str) -> Record:
    """A fit as a traced_estimate record at the answer's batch; its notes say the budget and
    the answer, so that reports can read the largest batch back."""
    notes = fit.notes + [
        f"fit: {fit.budget.describe()}; {ALLOWANCE}; largest batch {fit.batch_size}"
        + ("" if fit.batch_size else " (batch 1 does not fit; figures at batch 1)"),
    ]
    # A label per method, checkpointing and budget: reports group rows by label.
    label = f"{fit.spec.method}{' ckpt' if fit.spec.activation_checkpointing else ''} in {fit.budget.text}"
    return Record(run_id=fit.spec.run_id, suite=suite, label=label, spec=fit.spec, status=Status.OK,
                  kind=RecordKind.TRACED_ESTIMATE, setting=run_setting(fit.spec), memory=fit.memory, notes=notes,
                  started_at=fit.started_at, wall_s=fit.wall_s,
                  environment=environment(torch.device("cpu"), recorded_packages()))


def estimate_fit(specs: list[RunSpec], request: EstimateRequest) -> int:
    """`harness.py estimate --fit`: the fit table per budget (and a record per answer)."""
    fits, wall_s = fit_all(specs, [parse_budget(text) for text in request.values], request.jobs, request.full_trace)
    print(format_fits(fits, wall_s))
    if request.records:
        for fit in fits:
            append_record(request.records, fit_record(fit, request.suite))
        print(f"{len(fits)} estimate records appended to {request.records}")
    return 0
