"""One training run, top to bottom: load, step, measure, return what was measured.

The loop knows the method only through the Training it gets back from prepare(); nothing
here asks which method or workload it runs.
"""

import itertools
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Iterator

import torch
from tqdm import tqdm

from core.spec import RunSpec, resolve_device
from meters import memory, timing
from meters.tracker import CUDA_ALLOCATION_GRANULARITY_BYTES, MemoryTracker
from methods import prepare_training
from results.schema import Memory, Metrics
from training import parallel
from training.checkpoints import load_checkpoint, restore, save_checkpoint
from workloads import WORKLOADS


class NonFiniteLoss(RuntimeError):
    """Raised when the loss becomes NaN or infinite; the run is recorded with status nan."""


ROSE_ABOVE_START = 1.25
"""A loss that ends above this multiple of where it started has diverged."""
LEARNT_BELOW_UNIFORM = 0.9
RETURNED_TO_UNIFORM = 0.99
"""A loss that fell below LEARNT_BELOW_UNIFORM x the uniform-prediction loss and ended at or
above RETURNED_TO_UNIFORM x it has collapsed: the model predicts nothing any more. A short run
that never left the uniform level is not divergence: it has not learnt yet."""
MIN_WINDOW_STEPS = 5
"""Losses are judged as means over windows of this many steps (or a tenth of the run, if more):
one batch's loss is noisy (a tiny RoBERTa's swings 0.1 nats around ln 3 from step to step)."""
FLAT_AT_UNIFORM = 1e-4
"""A loss within this fraction of the uniform-prediction level on every step of the last window
sits flat at it: the model predicts the same for every input (a dead model: lr 1e6 on the tiny
LLaMA gives ln 2048 = 7.624618 on every step). A model that has not learnt yet still moves with
its batches by far more (the tiny RoBERTa's 0.1 nats), so it is not mistaken for one."""


def divergence(metrics: Metrics) -> str | None:
    """Why a finished run counts as diverged, or None: its figures are kept either way."""
    losses, uniform = metrics.loss_curve, metrics.uniform_loss
    window = min(len(losses), max(MIN_WINDOW_STEPS, len(losses) // 10))
    # Running sums: every window's mean in one pass, however long the run.
    totals = list(itertools.accumulate(losses, initial=0.0))
    means = [(totals[i + window] - totals[i]) / window for i in range(len(losses) - window + 1)]
    start, end, lowest = means[0], means[-1], min(means)
    if not math.isfinite(metrics.eval_loss if metrics.eval_loss is not None else 0.0) or metrics.perplexity == math.inf:
        return f"the held-out loss is {metrics.eval_loss}: its perplexity overflows"
    if uniform is not None and all(abs(loss - uniform) <= FLAT_AT_UNIFORM * uniform for loss in losses[-window:]):
        return (f"the loss sat at the uniform-prediction level {uniform:.4f} on each of the last {window} steps: the "
                "model predicts the same for every input")
    if end > ROSE_ABOVE_START * start:
        return (f"mean loss of the last {window} steps {end:.4f} is above {ROSE_ABOVE_START} x that of the first "
                f"{window}, {start:.4f}")
    if uniform is not None and lowest < LEARNT_BELOW_UNIFORM * uniform and end >= RETURNED_TO_UNIFORM * uniform:
        return (f"mean loss fell to {lowest:.4f} and came back to {end:.4f}, the uniform-prediction level "
                f"{uniform:.4f}: the model collapsed")
    return None


def autocast(spec: RunSpec, device: torch.device):
    """The forward's torch.autocast under a mixed precision policy; nothing under a pure one."""
    dtype = spec.policy.autocast_dtype
    return torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()


def optimizer_step(spec: RunSpec, workload, training, batches, device, ranks=None) -> tuple[torch.Tensor, int]:
    """One optimizer step over spec.grad_accum micro-batches; returns (loss, tokens seen). `ranks`
    (training/parallel.Ranks; None: one process) when the run has several."""
    step_loss = torch.zeros((), device=device)
    step_tokens = 0
    scaler = training.grad_scaler
    for micro_batch in range(spec.grad_accum):
        batch = {name: tensor.to(device) for name, tensor in next(batches).items()}
        if training.before_micro_batch:
            training.before_micro_batch(micro_batch == spec.grad_accum - 1)
        # The forward alone under autocast: the backward runs each op in its forward's dtype.
        with autocast(spec, device):
            loss = parallel.share_of_mean(workload.loss(training.model, batch), workload, batch, ranks)
        loss = loss / spec.grad_accum
        (scaler.scale(loss) if scaler else loss).backward()
        step_loss += loss.detach()
        step_tokens += workload.count_tokens(batch)
    if not training.steps_in_backward:
        if spec.grad_clip > 0:
            if scaler:
                scaler.unscale_(training.optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(training.model.parameters(), spec.grad_clip)
        if scaler:
            scaler.step(training.optimizer)  # skipped, and the scale lowered, where a gradient overflowed
            scaler.update()
        else:
            training.optimizer.step()
        training.optimizer.zero_grad(set_to_none=True)
    return step_loss, step_tokens


def training_step(spec: RunSpec, workload, training, batches, device, step: int, ranks=None) -> tuple[torch.Tensor, int]:
    """Optimizer step `step` (0-based), then the lr schedule and the method's after-step hook."""
    step_loss, step_tokens = optimizer_step(spec, workload, training, batches, device, ranks)
    training.scheduler.step()
    if training.after_step:
        training.after_step(step)
    return step_loss, step_tokens


def drawn_ahead(batches: Iterator) -> Iterator:
    """`batches` with the first drawn now, before the loop, so that lazy data set-up (building the
    corpus, loading the tokenizer, filling the shuffle buffer) is not part of step 0's time. It is
    held only until taken: a batch kept for the whole run would count in every step's memory."""
    ahead = [next(batches)]

    def from_the_first():
        yield ahead.pop()  # popped, not named: neither the list nor this frame keeps it
        yield from batches

    return from_the_first()


def train(spec: RunSpec, progress: bool = True, checkpoint_dir: Path | None = None) -> tuple[Metrics, Memory]:
    """Run one spec; returns what it measured. Raises on failure. With spec.checkpoint_every
    and a checkpoint_dir, saves checkpoints there and resumes from the last one. With
    spec.nproc > 1 this runs on every rank (training/parallel.py) and returns the global figures."""
    ranks = parallel.join(spec, resolve_device(spec.device))
    device = ranks.device
    # The same seed on every rank: the same initial weights, the same stream of global batches.
    torch.manual_seed(spec.seed)
    workload = WORKLOADS[spec.workload]
    model = workload.build_model(spec).to(device=device, dtype=spec.policy.weight_dtype)
    training = parallel.wrap(prepare_training(model, spec, workload), spec, ranks)
    if spec.policy.grad_scaler:
        training.grad_scaler = torch.amp.GradScaler(device.type)
    model = training.model
    model.train()
    clock = timing.StepClock(device, spec.timing_warmup_steps)
    granularity_bytes = CUDA_ALLOCATION_GRANULARITY_BYTES if device.type == "cuda" else 1
    tracker = MemoryTracker(model, training.optimizer, granularity_bytes, training.is_refresh_step)
    # Batches are drawn untracked: the data pipeline's tensors are not training memory.
    batches = tracker.untracked(drawn_ahead(workload.train_batches(spec, parallel.rows_of(ranks, spec.batch_size))))
    memory.reset_peaks(device)
    losses = []
    checkpointing = bool(spec.checkpoint_every and checkpoint_dir)
    saved = load_checkpoint(checkpoint_dir) if checkpointing else None
    first_step = restore(saved, training, losses, clock, tracker) if saved else 0
    # The stream is rebuilt from the seed: skipping the batches the done steps drew puts it
    # where the checkpoint left it.
    for _ in range(first_step * spec.grad_accum):
        next(batches)

    bar = tqdm(range(first_step, spec.steps), desc=f"{spec.method} {spec.workload}-{spec.size}",
               disable=not progress or ranks.rank > 0, initial=first_step, total=spec.steps)
    for step in bar:
        # The tracker's dispatch mode slows every op, so it watches only the timing warm-up
        # steps, which the step-time figures leave out; with no warm-up steps there is no
        # breakdown in the record.
        watched = tracker.step() if step < spec.timing_warmup_steps else nullcontext()
        clock.start()
        with watched:
            step_loss, step_tokens = training_step(spec, workload, training, batches, device, step, ranks)
        step_loss, step_tokens = parallel.reduce_step(step_loss, step_tokens, ranks)
        clock.stop(step_tokens)

        losses.append(step_loss.item())
        if not math.isfinite(losses[-1]):
            raise NonFiniteLoss(f"loss is {losses[-1]} at step {step}")
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        if checkpointing and (step + 1) % spec.checkpoint_every == 0 and step + 1 < spec.steps:
            save_checkpoint(checkpoint_dir, step + 1, training, losses, clock, tracker)

    with autocast(spec, device):
        evaluation = workload.evaluate(model, spec)
    metrics = Metrics.of(losses, workload.loss_floor(spec), workload.uniform_loss(spec), clock.summary(), evaluation)
    parallel.reshard(model)  # FSDP2: the evaluation's forward left the root's weights gathered
    figures = Memory.of(tracker.summary(), memory.state_bytes(training), memory.peak_memory(device))
    figures = parallel.gather_memory(figures, ranks)
    parallel.leave(ranks)
    return metrics, figures
