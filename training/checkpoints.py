"""Checkpoints of a run in progress, so that a long run killed mid-way resumes where it was.

A checkpoint holds everything the rest of the run depends on: model, optimizer (GaLore
projectors and 8-bit states included: they live in its state_dict), lr scheduler, the steps
done (the data stream is rebuilt from the seed and skipped that far), the torch RNG states,
and what was measured so far (losses, step times, the tracker's steps). It is written to a
temporary file and renamed over the last one, so a kill mid-write leaves the previous one,
and it is read with torch.load(weights_only=True): nothing in it is executed or unpickled.
"""

import os
import zipfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

from meters.tracker import StepMemory

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(directory: Path, steps_done: int, training, losses: list[float], clock, tracker):
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "steps_done": steps_done,
        "model": training.model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(),
        "losses": list(losses),
        "step_seconds": list(clock.step_seconds),
        "step_tokens": list(clock.step_tokens),
        "tracker_steps": [asdict(step) for step in tracker.steps],
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    partial = directory / f"{CHECKPOINT_FILE}.partial"
    torch.save(state, partial)
    os.replace(partial, directory / CHECKPOINT_FILE)


def _reason(error: Exception) -> str:
    # The first sentence only: torch's refusal goes on to advise weights_only=False, which would
    # execute whatever the file holds.
    return f"{type(error).__name__}: {str(error).splitlines()[0].split('. ')[0]}"


def load_checkpoint(directory: Path | None) -> dict | None:
    """The last checkpoint in directory, or None where there is none."""
    if directory is None or not (directory / CHECKPOINT_FILE).exists():
        return None
    try:
        return torch.load(directory / CHECKPOINT_FILE, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one line
        raise RuntimeError(f"checkpoint {directory / CHECKPOINT_FILE} could not be loaded ({_reason(error)})") from None


def set_aside_unreadable(directory: Path) -> str | None:
    """Where the run's last checkpoint cannot be loaded (cut short, or not one of ours), move it
    aside, kept for inspection beside the run's folder, so that the run starts from step 0
    instead of failing on every resume; returns the record's note saying so, or None. Read as a
    memory map: nothing of a large checkpoint is read but its index."""
    path = directory / CHECKPOINT_FILE
    if not path.exists():
        return None
    if not zipfile.is_zipfile(path):
        reason = "not a zip archive, as torch.save writes: cut short or not a checkpoint"
    else:
        try:
            torch.load(path, weights_only=True, mmap=True)
            return None
        except Exception as error:  # noqa: BLE001 - any unreadable file is set aside alike
            reason = _reason(error)
    # Beside the run's folder, not in it: the folder goes once the run finishes, the file stays.
    aside = directory.parent / f"{directory.name}.unreadable-{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%f}.pt"
    os.replace(path, aside)
    return f"checkpoint {path} could not be loaded ({reason}); moved to {aside}; the run started from step 0"


def restore(state: dict, training, losses: list[float], clock, tracker) -> int:
    """Put the run back where the checkpoint left it; returns the steps it had done."""
    training.model.load_state_dict(state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    training.scheduler.load_state_dict(state["scheduler"])
    losses[:] = state["losses"]
    clock.step_seconds[:] = state["step_seconds"]
    clock.step_tokens[:] = state["step_tokens"]
    tracker.steps[:] = [StepMemory(**step) for step in state["tracker_steps"]]
    torch.set_rng_state(state["cpu_rng"])
    if state["cuda_rng"]:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["steps_done"]
