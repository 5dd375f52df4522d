"""Optimizer-step benchmark: our GaLore and 8-bit GaLore against galore-torch's, side by side.

Run: python -m benchmarks.galore_optim [--size 60m] [--device cpu]   (or: make bench-optim)

Every optimizer gets its own copy of the same LLaMA model and the same fixed random
gradients; steps are interleaved (ours, reference, ours, ...) so machine noise hits all
alike. Measured:
- step time: median of steps without a projector refresh, median of refresh (SVD) steps,
  and the two amortised at T = 200 (one refresh per 200 steps);
- memory: optimizer state bytes (walking optimizer.state, projectors included), and the
  step's transient peak: the most bytes the step allocates above what was live before it
  (CPU: every allocation the torch profiler records, including inside bitsandbytes'
  kernels; CUDA: torch.cuda.max_memory_allocated).
"""

import argparse
import copy
import os
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext

import torch
from torch._C._profiler import _EventType

from core.spec import RunSpec, resolve_device
from core.units import MIB
from meters.memory import optimizer_state_bytes
from methods.galore import GALORE, param_groups
from methods.galore_adamw import GaLoreAdamW
from methods.galore_adamw8bit import GaLoreAdamW8bit
from workloads import WORKLOADS

PAPER_GAP = 200
"""T of the paper's runs, at which the refresh cost is amortised."""
LR = 1e-3
REFERENCE_8BIT = "galore-torch GaLoreAdamW8bit"
STUBBED = "galore-torch GaLoreAdamW8bit, cuda sync stubbed"


def reference_optimizers() -> dict:
    from galore_torch import GaLoreAdamW as ReferenceGaLoreAdamW
    from galore_torch import GaLoreAdamW8bit as ReferenceGaLoreAdamW8bit

    return {
        "galore-torch GaLoreAdamW": lambda groups: ReferenceGaLoreAdamW(
            groups, lr=LR, weight_decay=0.0, no_deprecation_warning=True
        ),
        REFERENCE_8BIT: lambda groups: ReferenceGaLoreAdamW8bit(groups, lr=LR, weight_decay=0.0),
    }


@contextmanager
def cuda_synchronize_as_no_op():
    """torch.cuda.synchronize() does nothing inside, and is restored after."""
    original = torch.cuda.synchronize
    torch.cuda.synchronize = lambda *args: None
    try:
        yield
    finally:
        torch.cuda.synchronize = original


@contextmanager
def profiler_log_silenced():
    """The profiler's C++ side writes a start and a stop line to stderr every time; they are
    of no use to a reader, so stderr goes to /dev/null while it runs and is restored after."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def transient_peak_bytes(run_step, device) -> int:
    """The most bytes allocated at once during run_step() above what was live before it."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run_step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    # The CPU allocator keeps no statistics; the profiler's allocation events carry the running
    # total allocated since profiling started (what torch's own memory profiler reads).
    with profiler_log_silenced(), torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as profile:
        run_step()
    events, pending = [], list(profile.profiler.kineto_results.experimental_event_tree())
    while pending:
        event = pending.pop()
        pending.extend(event.children)
        if event.tag == _EventType.Allocation:
            events.append(event.extra_fields.total_allocated)
    return max([0, *events])


class Contender:
    """One optimizer on its own copy of the model, stepped with the shared gradients."""

    def __init__(self, name, make_optimizer, model, spec, gradients, stub_cuda_synchronize=False):
        self.name = name
        self.stub_cuda_synchronize = stub_cuda_synchronize
        self.model = copy.deepcopy(model)
        self.parameters = list(self.model.parameters())
        self.gradients = gradients
        groups = param_groups(self.model, spec, GALORE.parse_options(spec.method_options), WORKLOADS["llama"])
        self.optimizer = make_optimizer(groups)
        self.step_times_s, self.refresh_times_s = [], []
        self.error = None

    def step(self):
        # Reassigned every step: galore-torch's 8-bit optimizer replaces p.grad with its projection.
        for parameter, gradient in zip(self.parameters, self.gradients):
            parameter.grad = gradient
        with cuda_synchronize_as_no_op() if self.stub_cuda_synchronize else nullcontext():
            self.optimizer.step()

    def timed_step(self, index, gap, device):
        if self.error:
            return
        try:
            synchronize(device)
            start = time.perf_counter()
            self.step()
            synchronize(device)
        except Exception as error:  # a failing reference is a result to report, not a crash
            self.error = f"{type(error).__name__}: {error}"
            return
        elapsed_s = time.perf_counter() - start
        if index > 0:  # step 0 also allocates the state
            (self.refresh_times_s if index % gap == 0 else self.step_times_s).append(elapsed_s)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", help="llama size in workloads/sizes.toml (default small)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--gap", type=int, default=5, help="T while measuring: a refresh every GAP steps")
    parser.add_argument("--refreshes", type=int, default=5, help="refresh steps to time (after step 0)")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    spec = RunSpec(workload="llama", size=args.size, method="galore", method_options={"update_proj_gap": args.gap})
    torch.manual_seed(0)
    model = WORKLOADS["llama"].build_model(spec).to(device)
    generator = torch.Generator(device).manual_seed(1)
    gradients = [1e-3 * torch.randn(p.shape, generator=generator, device=device) for p in model.parameters()]
    makers = {
        "ours galore": lambda groups: GaLoreAdamW(groups, lr=LR, weight_decay=0.0),
        "ours galore8bit": lambda groups: GaLoreAdamW8bit(groups, lr=LR, weight_decay=0.0),
        **reference_optimizers(),
    }
    contenders = [Contender(name, make, model, spec, gradients) for name, make in makers.items()]

    steps = args.gap * args.refreshes + 1
    for index in range(steps):
        for contender in contenders:
            contender.timed_step(index, args.gap, device)
        if index == 0 and device.type == "cpu" and any(c.error for c in contenders if c.name == REFERENCE_8BIT):
            # galore-torch's 8-bit optimizer fails on CPU at torch.cuda.synchronize(); measure its
            # algorithm anyway with that call made a no-op, as one more contender.
            stubbed = Contender(STUBBED, makers[REFERENCE_8BIT], model, spec, gradients, stub_cuda_synchronize=True)
            contenders.append(stubbed)
            contenders[-1].timed_step(index, args.gap, device)
    del model

    rank = next(group["rank"] for group in contenders[0].optimizer.param_groups if "rank" in group)
    parameter_count = sum(p.numel() for p in contenders[0].parameters)
    print(f"llama-{args.size}: {parameter_count / 1e6:.1f}M parameters, GaLore rank {rank}, scale 0.25, std; "
          f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{steps} interleaved steps per optimizer, refresh every {args.gap} (timed: medians; step 0 excluded)\n")
    header = (
        f"{'optimizer':<50} {'step ms':>9} {'refresh ms':>11} {'@T=200 ms':>10} "
        f"{'state MiB':>10} {'step peak MiB':>14} {'refresh peak MiB':>17}"
    )
    print(header)
    results = {}
    for contender in contenders:
        if contender.error:
            print(f"{contender.name:<50} failed: {contender.error}")
            continue
        step_s = statistics.median(contender.step_times_s)
        refresh_s = statistics.median(contender.refresh_times_s)
        amortised_s = (refresh_s + (PAPER_GAP - 1) * step_s) / PAPER_GAP
        # One more plain step and one more refresh step, measured for memory only.
        plain_peak = transient_peak_bytes(contender.step, device)
        for _ in range(args.gap - 2):
            contender.step()
        refresh_peak = transient_peak_bytes(contender.step, device)
        results[contender.name] = (step_s, amortised_s, optimizer_state_bytes(contender.optimizer), plain_peak, refresh_peak)
        print(
            f"{contender.name:<50} {step_s * 1e3:>9.2f} {refresh_s * 1e3:>11.2f} {amortised_s * 1e3:>10.2f} "
            f"{results[contender.name][2] / MIB:>10.2f} {plain_peak / MIB:>14.2f} {refresh_peak / MIB:>17.2f}"
        )
    if STUBBED in results:
        print(f"\nnote: '{STUBBED}' is galore-torch's 8-bit optimizer with torch.cuda.synchronize() made a no-op")
    print_ratios(results)


def print_ratios(results: dict):
    pairs = [
        ("ours galore", "galore-torch GaLoreAdamW"),
        ("ours galore8bit", REFERENCE_8BIT),
        ("ours galore8bit", STUBBED),
    ]
    print("\nratios, ours / reference (target: time <= 1.0; 8-bit step peak < 1.0):")
    for ours, reference in pairs:
        if ours in results and reference in results:
            (o_step, o_amortised, o_state, o_peak, o_refresh_peak) = results[ours]
            (r_step, r_amortised, r_state, r_peak, r_refresh_peak) = results[reference]
            print(
                f"  {ours} / {reference}: step time {o_step / r_step:.2f}, at T=200 {o_amortised / r_amortised:.2f}, "
                f"state {o_state / r_state:.2f}, step peak {o_peak / r_peak:.2f}, "
                f"refresh peak {o_refresh_peak / r_refresh_peak:.2f}"
            )


if __name__ == "__main__":
    main()
