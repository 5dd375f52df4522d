"""What can be checked about a run before it starts, so that a mistake costs seconds, not the
runs before it: the registered names, the method's and the workload's options, local paths in
data options, and each method's own refusals (layer-wise updates with gradient clipping, target
modules that match nothing, an SVD rank above a weight's side, ...), found by preparing the
method on a model on the meta device, which allocates no memory at any size. The spec's own
fields were checked when it was built (core/spec.py); what depends on the launcher (CUDA on
this machine, a Slurm client) its launcher checks. `harness.py run` and `harness.py estimate`
both come through here, so an estimate refuses what a run refuses, but for a CUDA-only method on
another device: estimates are traced as on CUDA.
"""

import gc
import os
from dataclasses import fields

import torch

from core.plan import PlannedRun
from core.spec import RunSpec, resolve_device
from methods import METHODS, prepare_training
from workloads import WORKLOADS
from workloads.sizes import model_config

LOCAL_PATH_OPTIONS = ("path",)
"""Data options that are always local paths; tokenizer and checkpoint may be Hub names, so they
are checked only when they look like paths."""


class PreflightError(ValueError):
    """A run that would fail for a reason known before it starts."""


def _looks_local(value: str) -> bool:
    return value.startswith(("/", ".", "~"))


def _check_names(spec: RunSpec):
    if spec.workload not in WORKLOADS:
        raise PreflightError(f"workload {spec.workload!r} is not registered; accepted: {', '.join(WORKLOADS)}")
    if spec.method not in METHODS:
        raise PreflightError(f"method {spec.method!r} is not registered; accepted: {', '.join(METHODS)}")
    model_config(spec.workload, spec.size)


def _check_paths(data):
    for field in fields(data):
        value = getattr(data, field.name)
        if isinstance(value, str) and (field.name in LOCAL_PATH_OPTIONS or _looks_local(value)):
            if not os.path.exists(os.path.expanduser(value)):
                raise PreflightError(f"data.{field.name} = {value!r} does not exist")


def _check_method(spec: RunSpec, workload):
    if "pretrained" in model_config(spec.workload, spec.size):
        return  # building it would load a checkpoint; its run finds out
    try:
        with torch.device("meta"):
            model = workload.build_model(spec)
        training = prepare_training(model, spec, workload)
    except (ValueError, TypeError) as error:
        raise PreflightError(str(error)) from None
    if METHODS[spec.method].svd_rank:
        _check_svd_rank(training)
    if spec.policy.grad_scaler and training.steps_in_backward:
        raise PreflightError(f"method {spec.method} updates the weights inside the backward, before a GradScaler "
                             f"could unscale their gradients or skip an overflowed step: precision "
                             f"{spec.policy.name} cannot train it; accepted: bf16-mixed, bf16-true, 32-true")


def _check_svd_rank(training):
    # A larger rank would be cut to the smaller side by the SVD without a word: the run would
    # not be the one its options name.
    for group in training.optimizer.param_groups:
        for parameter in group["params"] if "rank" in group else ():
            if group["rank"] > min(parameter.shape):
                raise PreflightError(
                    f"options.rank = {group['rank']} exceeds the smaller side of a {parameter.shape[0]}x"
                    f"{parameter.shape[1]} weight it projects; accepted: 1..{min(parameter.shape)}"
                )


def _check_timed_steps(spec: RunSpec):
    # A run (not an estimate, which traces its steps untimed) must leave a step to time.
    if spec.timing_warmup_steps >= spec.steps:
        raise PreflightError(f"timing_warmup_steps = {spec.timing_warmup_steps} leaves none of the {spec.steps} steps "
                             f"timed (no tokens/s, no step times); accepted: 0 to {spec.steps - 1}")


def _check_device(spec: RunSpec):
    # A run only: a traced estimate assumes CUDA on fake CPU tensors, whatever its spec's device.
    device = resolve_device(spec.device)
    if spec.policy.cuda_only and device.type != "cuda":
        raise PreflightError(f"precision {spec.policy.name} trains on CUDA devices only (FP16 autocast with a "
                             f"GradScaler) and device = {spec.device!r} is {device.type} here; accepted: bf16-mixed, "
                             "bf16-true, 32-true, or a CUDA device")
    if METHODS[spec.method].cuda_only and device.type != "cuda":
        raise PreflightError(f"method {spec.method} trains on CUDA devices only (it moves tensors between the GPU and "
                             f"the host) and device = {spec.device!r} is {device.type} here; accepted: cuda, or auto "
                             "on a machine with CUDA")


def check_setting(spec: RunSpec):
    """PreflightError (or the options' own OptionError), in one line, for a spec whose method or
    model cannot be set up as asked; no data is read."""
    _check_names(spec)
    METHODS[spec.method].parse_options(spec.method_options)
    _check_method(spec, WORKLOADS[spec.workload])


def check_data(spec: RunSpec):
    """PreflightError, in one line, for data the run could not read: a local path that does not
    exist, a split without rows, a tokenizer or checkpoint that does not load, the Hub out of
    reach where the run needs it (the workload's own check)."""
    workload = WORKLOADS[spec.workload]
    _check_paths(workload.data(spec))
    try:
        workload.check(spec)
    except (ValueError, OSError, RuntimeError) as error:
        raise PreflightError(str(error)) from None


def check_run(spec: RunSpec):
    """PreflightError (or the options' own OptionError), in one line, for a spec that cannot
    start or would fail at once."""
    check_setting(spec)
    check_data(spec)


def preflight(source: str, runs: list[PlannedRun]):
    """PreflightError naming the source and the run, for the first run check_run refuses."""
    # What is alive now (the imported modules) stays: a method that collects garbage as it is
    # built (BAdam, on every switch of its active block) then walks only what came since, not
    # the hundreds of thousands of objects torch and transformers left (a second per collect).
    gc.freeze()
    checked = set()
    for planned in runs:
        spec = planned.spec
        setting = repr({**spec.to_json(), "seed": None})
        if setting in checked:  # seeds differ only in their draws
            continue
        checked.add(setting)
        try:
            _check_timed_steps(spec)
            check_run(spec)
            _check_device(spec)
        except ValueError as error:
            raise PreflightError(f"{source}: {planned.label} on {spec.workload}-{spec.size}: {error}") from None
