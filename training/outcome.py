"""What a worker reports about the run it trained: its outcome as the record's fields, success
or caught failure, written by whichever launcher's child side ran it (the fork-server worker of
a local run, each rank under torchrun)."""

import traceback
from dataclasses import asdict
from pathlib import Path

import torch

from core.spec import RunSpec, resolve_device
from core.statuses import Status
from meters.environment import environment
from methods import METHODS
from training.loop import NonFiniteLoss, divergence


def classify(error: BaseException) -> Status:
    """The status of a run that raised `error`."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return Status.OOM
    if isinstance(error, NonFiniteLoss):
        return Status.NAN
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return Status.KILLED
    return Status.ERROR


def train_outcome(spec_json: dict, train_function, progress: bool, checkpoint_dir: str,
                  packages: tuple[str, ...]) -> dict:
    """Train and return the outcome (success or caught failure) as the record's fields; the
    environment names the versions of `packages`."""
    outcome = {}
    try:
        spec = RunSpec(**spec_json)
        outcome["environment"] = asdict(environment(resolve_device(spec.device), packages))
        metrics, memory = train_function(spec, progress=progress, checkpoint_dir=Path(checkpoint_dir))
        diverged = divergence(metrics)
        outcome.update(metrics=asdict(metrics), memory=asdict(memory),
                       status=Status.DIVERGED if diverged else Status.OK, error=diverged,
                       notes=METHODS[spec.method].notes_for(resolve_device(spec.device).type))
    except BaseException as error:  # noqa: BLE001 - every failure must become a record
        outcome.update(status=classify(error), error=f"{type(error).__name__}: {error}",
                       traceback=traceback.format_exc(limit=-8))
    return outcome
