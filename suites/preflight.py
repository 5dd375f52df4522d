"""What can be checked about a suite's runs before any worker starts, so that a mistake costs
seconds, not the runs before it: CUDA where a run asks for it (GPUs enough for its ranks),
local paths in data options, the ranks of a run on several processes (data_parallel.py), and
each method's own refusals (layer-wise updates with gradient clipping, target modules that
match nothing, ...), found by preparing the method on a model on the meta device, which
allocates no memory at any size. Each problem is one line naming the suite, the run and why.
"""

import os
from dataclasses import fields

import torch

from data_parallel import check_world
from methods import METHODS, prepare_training
from suites.load import Suite
from workloads import WORKLOADS
from workloads.sizes import model_config

LOCAL_PATH_OPTIONS = ("path",)
"""Data options that are always local paths; tokenizer and checkpoint may be Hub names, so they
are checked only when they look like paths."""


class PreflightError(ValueError):
    """A run that would fail for a reason known before it starts."""


def _looks_local(value: str) -> bool:
    return value.startswith(("/", ".", "~"))


def _check_cuda(source: str, suite: Suite):
    on_cuda = [run for run in suite.runs if run.spec.device.startswith("cuda")]
    if on_cuda and not torch.cuda.is_available():
        raise PreflightError(
            f"{source}: device = {on_cuda[0].spec.device!r} ({len(on_cuda)} runs) but this machine has no CUDA "
            "device (torch.cuda.is_available() is False); --set device=cpu runs them here"
        )
    wider = [run for run in on_cuda if run.spec.nproc > torch.cuda.device_count()]
    if wider:
        raise PreflightError(f"{source}: nproc = {wider[0].spec.nproc} ranks on a node with "
                             f"{torch.cuda.device_count()} CUDA devices; one rank per GPU")


def _check_paths(source: str, where: str, data):
    for field in fields(data):
        value = getattr(data, field.name)
        if isinstance(value, str) and (field.name in LOCAL_PATH_OPTIONS or _looks_local(value)):
            if not os.path.exists(os.path.expanduser(value)):
                raise PreflightError(f"{source}: {where}: data.{field.name} = {value!r} does not exist")


def _check_method(source: str, where: str, spec, workload):
    if "pretrained" in model_config(spec.workload, spec.size):
        return  # building it would load a checkpoint; its run finds out
    try:
        with torch.device("meta"):
            model = workload.build_model(spec)
        training = prepare_training(model, spec, workload)
    except (ValueError, TypeError) as error:
        raise PreflightError(f"{source}: {where}: {error}") from None
    if METHODS[spec.method].svd_rank:
        _check_svd_rank(source, where, training)


def _check_svd_rank(source: str, where: str, training):
    # A larger rank would be cut to the smaller side by the SVD without a word: the run would
    # not be the one its options name.
    for group in training.optimizer.param_groups:
        for parameter in group["params"] if "rank" in group else ():
            if group["rank"] > min(parameter.shape):
                raise PreflightError(
                    f"{source}: {where}: options.rank = {group['rank']} exceeds the smaller side of a "
                    f"{parameter.shape[0]}x{parameter.shape[1]} weight it projects; accepted: 1..{min(parameter.shape)}"
                )


def preflight(source: str, suite: Suite, runs_here: bool = True):
    """PreflightError on the first run that cannot start or would fail at once. CUDA is checked
    only where the runs run here: Slurm jobs find theirs on the nodes they land on."""
    if runs_here:
        _check_cuda(source, suite)
    checked = set()
    for planned in suite.runs:
        spec = planned.spec
        where = f"{planned.label} on {spec.workload}-{spec.size}"
        setting = repr({**spec.to_json(), "seed": None})
        if setting in checked:  # seeds differ only in their draws
            continue
        checked.add(setting)
        try:
            check_world(spec)
        except ValueError as error:
            raise PreflightError(f"{source}: {where}: {error}") from None
        workload = WORKLOADS[spec.workload]
        _check_paths(source, where, workload.data(spec))
        _check_method(source, where, spec, workload)
