"""The parent side of a run on several processes (spec nproc or nnodes above 1): torchrun,
started with the spec's ranks, each running launchers/torchrun/child.py; the run's outcome is
written once, as the fork-server worker of a one-process run writes it (launchers/local/).

    python -m torch.distributed.run --standalone --nproc-per-node N -m launchers.torchrun.child SPEC OUTCOME ...

Each rank dies with torchrun (child.py), and torchrun with the harness (below), so a timeout,
SIGTERM or a killed harness leaves no rank training.
"""

import json
import subprocess
import sys
from pathlib import Path

from launchers.processes import die_with_parent

REPOSITORY = Path(__file__).resolve().parents[2]


def torchrun_command(spec, worker_arguments: list[str]) -> list[str]:
    """torchrun with the spec's ranks, running the child module on each."""
    if spec.nnodes == 1:
        launch = ["--standalone", "--nproc-per-node", str(spec.nproc)]
    else:
        launch = ["--nnodes", str(spec.nnodes), "--nproc-per-node", str(spec.nproc), "--rdzv-backend", "c10d",
                  "--rdzv-endpoint", spec.rdzv_endpoint, "--rdzv-id", spec.run_id]
    return [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "launchers.torchrun.child", *worker_arguments]


class TorchrunProcess:
    """The ranks of one run under torchrun, with the face of multiprocessing.Process that
    launchers/local/parent.run_one uses: start, join, is_alive, terminate, kill, pid, exitcode."""

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
                                         preexec_fn=die_with_parent)

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
