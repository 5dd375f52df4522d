"""What each rank of a run on several processes runs, under torchrun (parent.py starts it).

How a run on several ranks ends:
  - every rank trains; the ranks with LOCAL_RANK 0 write the outcome (the figures are global:
    training/parallel.py reduces them), so on several nodes each node's harness gets the record;
  - a rank that raises writes its outcome, "rank R: " before the error, and exits 1; torchrun
    sees it within its monitor interval (0.1 s) and stops the other ranks, which would
    otherwise wait in their next collective for the failed one until the process group's
    timeout (30 minutes by default). The first outcome written wins: it is the cause;
  - each rank dies with torchrun (PR_SET_PDEATHSIG).
"""

import importlib
import json
import os
import sys
from pathlib import Path

from core.statuses import TRAINED
from launchers.processes import die_with_parent, exit_if_orphaned


def _write_first(path: str, outcome: dict):
    """Write the outcome unless a rank has already written one."""
    try:
        with open(path, "x") as file:
            json.dump(outcome, file)
    except FileExistsError:
        pass


def main(arguments: list[str]):
    die_with_parent()
    exit_if_orphaned()  # torchrun was gone before the line above took effect
    # Imported only now: the seconds of torch imports come after this rank is bound to torchrun.
    from launchers.packages import recorded_packages
    from training.outcome import train_outcome

    spec_path, outcome_path, checkpoint_dir, train_name, progress = arguments
    module_name, function_name = train_name.split(":")
    train_function = getattr(importlib.import_module(module_name), function_name)
    outcome = train_outcome(json.loads(Path(spec_path).read_text()), train_function, progress == "progress",
                            checkpoint_dir, recorded_packages())
    if outcome["status"] not in TRAINED:
        outcome["error"] = f"rank {os.environ['RANK']}: {outcome['error']}"
        _write_first(outcome_path, outcome)
        sys.exit(1)
    if os.environ["LOCAL_RANK"] == "0":
        _write_first(outcome_path, outcome)


if __name__ == "__main__":
    main(sys.argv[1:])
