"""The worker of a run on several processes (spec nproc or nnodes above 1): torchrun starts
its ranks, each runs main() below, and the run's outcome is written once, as the fork-server
worker of a one-process run writes it (runner.py).

    python -m torch.distributed.run --standalone --nproc-per-node N -m torchrun_worker SPEC OUTCOME ...

How a run on several ranks ends:
  - every rank trains; the ranks with LOCAL_RANK 0 write the outcome (the figures are global:
    data_parallel.py reduces them), so on several nodes each node's harness gets the record;
  - a rank that raises writes its outcome, "rank R: " before the error, and exits 1; torchrun
    sees it within its monitor interval (0.1 s) and stops the other ranks, which would
    otherwise wait in their next collective for the failed one until the process group's
    timeout (30 minutes by default). The first outcome written wins: it is the cause;
  - each rank dies with torchrun (PR_SET_PDEATHSIG), and torchrun with the harness, so a
    timeout, SIGTERM or a killed harness leaves no rank training.
"""

import ctypes
import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1
REPOSITORY = Path(__file__).resolve().parent


def _die_with_parent():
    """The kernel kills this process when its parent exits, however it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def torchrun_command(spec, worker_arguments: list[str]) -> list[str]:
    """torchrun with the spec's ranks, running this module on each."""
    if spec.nnodes == 1:
        launch = ["--standalone", "--nproc-per-node", str(spec.nproc)]
    else:
        launch = ["--nnodes", str(spec.nnodes), "--nproc-per-node", str(spec.nproc), "--rdzv-backend", "c10d",
                  "--rdzv-endpoint", spec.rdzv_endpoint, "--rdzv-id", spec.run_id]
    return [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "torchrun_worker", *worker_arguments]


class TorchrunProcess:
    """The ranks of one run under torchrun, with the face of multiprocessing.Process that
    runner.run_one uses: start, join, is_alive, terminate, kill, pid, exitcode."""

    def __init__(self, spec, outcome_path: str, train_function, progress: bool, checkpoint_dir: str):
        spec_path = Path(outcome_path).with_name("spec.json")
        spec_path.write_text(json.dumps(spec.to_json()))
        train_name = f"{train_function.__module__}:{train_function.__qualname__}"
        self.command = torchrun_command(
            spec, [str(spec_path), outcome_path, checkpoint_dir, train_name, "progress" if progress else "quiet"]
        )
        self._process: subprocess.Popen | None = None

    def start(self):
        # A session of its own: a Ctrl-C at the terminal reaches the harness, which stops the
        # run and records it, not torchrun behind its back.
        self._process = subprocess.Popen(self.command, cwd=REPOSITORY, start_new_session=True,
                                         preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def exitcode(self) -> int | None:
        return self._process.poll() if self._process else None

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def join(self, timeout: float | None = None):
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def terminate(self):
        """SIGTERM: torchrun passes it to the ranks and exits."""
        self._process.terminate()

    def kill(self):
        """SIGKILL to torchrun; the ranks die with it (PR_SET_PDEATHSIG)."""
        self._process.kill()


def _write_first(path: str, outcome: dict):
    """Write the outcome unless a rank has already written one."""
    try:
        with open(path, "x") as file:
            json.dump(outcome, file)
    except FileExistsError:
        pass


def main(arguments: list[str]):
    _die_with_parent()
    if os.getppid() == 1:  # torchrun was gone before the line above took effect
        sys.exit(1)
    from runner import train_outcome

    spec_path, outcome_path, checkpoint_dir, train_name, progress = arguments
    module_name, function_name = train_name.split(":")
    train_function = getattr(importlib.import_module(module_name), function_name)
    outcome = train_outcome(json.loads(Path(spec_path).read_text()), train_function, progress == "progress",
                            checkpoint_dir)
    if outcome["status"] not in ("ok", "diverged"):
        outcome["error"] = f"rank {os.environ['RANK']}: {outcome['error']}"
        _write_first(outcome_path, outcome)
        sys.exit(1)
    if os.environ["LOCAL_RANK"] == "0":
        _write_first(outcome_path, outcome)


if __name__ == "__main__":
    main(sys.argv[1:])
