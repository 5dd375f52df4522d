"""Runs on several processes through torchrun (launchers/torchrun/): recorded with every rank's
figures; a rank that raises ends the run as `error`, never a hang; a timeout stops every rank."""

import os
import select
import time
from pathlib import Path

import pytest
import torch

from core.plan import PlannedRun
from core.spec import RunSpec
from launchers.local import parent
from launchers.local.parent import run_one
from launchers.torchrun.parent import TorchrunProcess
from tests.process_events import HANG_GUARD_S, all_ended
from training.loop import train

pytestmark = [pytest.mark.distributed, pytest.mark.slow]  # torchrun starts every rank anew

TINY = dict(workload="llama", size="tiny", steps=4, batch_size=4, seq_len=16, eval_batches=1,
            timing_warmup_steps=1, device="cpu", lr=3e-3)


def raises_on_rank_1(spec, progress, checkpoint_dir):
    """Stands in for train() in a torchrun run: rank 1 raises while rank 0 waits for it in a
    collective that would otherwise wait for the process group's 30-minute timeout."""
    import torch.distributed as dist

    from training import parallel

    ranks = parallel.join(spec, torch.device("cpu"))
    if ranks.rank == 1:
        raise RuntimeError("deliberate failure on rank 1")
    dist.barrier()
    raise AssertionError("rank 0 passed a barrier rank 1 never reached")


def test_a_rank_that_raises_ends_the_run_as_error_not_a_hang(tmp_path):
    spec = RunSpec(**TINY, method="full", nproc=2)
    # A hang would end at the timeout, recorded timeout: an error record says torchrun stopped
    # rank 0 by itself, whatever the start-up took.
    record = run_one(PlannedRun("full", spec), "distributed", raises_on_rank_1, progress=False, timeout_s=HANG_GUARD_S,
                     checkpoint_dir=tmp_path)
    assert (record.status, record.error) == ("error", "rank 1: RuntimeError: deliberate failure on rank 1")
    assert record.world_size == 2 and record.run_id.endswith("-w2")


def test_a_run_on_two_ranks_through_torchrun_is_recorded_with_every_rank(tmp_path):
    spec = RunSpec(**TINY, method="galore", method_options={"rank": 8, "update_proj_gap": 2}, nproc=2)
    record = run_one(PlannedRun("galore", spec), "distributed", train, progress=False, timeout_s=HANG_GUARD_S,
                     checkpoint_dir=tmp_path)
    assert record.status == "ok", record.error
    assert record.world_size == 2
    assert len(record.memory.tracker_peak_bytes_by_rank) == 2
    assert record.memory.tracker_peak_bytes == max(record.memory.tracker_peak_bytes_by_rank)
    assert record.metrics.tokens_per_s > 0 and len(record.metrics.loss_curve) == TINY["steps"]


RUNNING = "ranks-running"
"""A FIFO in the run's checkpoint folder: each rank in the stand-in below writes its rank there."""


def says_so_then_sleeps(spec, progress, checkpoint_dir):
    """Stands in for train(): tells the test this rank runs, then never finishes."""
    with open(Path(checkpoint_dir) / RUNNING, "w") as fifo:
        fifo.write(f"{os.environ['RANK']}\n")
    time.sleep(600)


class StartedOnceEveryRankRuns(TorchrunProcess):
    """torchrun, whose start() returns once every rank is in the stand-in: run_one's timeout then
    counts from there, so it finds both ranks running however long their start-up took."""

    def __init__(self, spec, outcome_path, train_function, progress, checkpoint_dir):
        super().__init__(spec, outcome_path, train_function, progress, checkpoint_dir)
        self.running = Path(checkpoint_dir) / RUNNING

    def start(self):
        super().start()
        reader = os.open(self.running, os.O_RDONLY | os.O_NONBLOCK)
        keeper = os.open(self.running, os.O_WRONLY)  # no end of file between one rank's line and the next
        torchrun = os.pidfd_open(self.pid)
        said = ""
        try:
            while said.count("\n") < 2:
                ready, _, _ = select.select([reader, torchrun], [], [], HANG_GUARD_S)
                assert reader in ready, f"ranks running: {said.split()}; torchrun ended or the hang guard did"
                said += os.read(reader, 64).decode()
        except BaseException:
            self.kill()  # the ranks die with torchrun
            raise
        finally:
            for descriptor in (reader, keeper, torchrun):
                os.close(descriptor)


def test_a_run_on_two_ranks_past_the_timeout_is_stopped_with_every_rank(tmp_path, monkeypatch):
    import psutil

    os.mkfifo(tmp_path / RUNNING)
    monkeypatch.setattr(parent, "TorchrunProcess", StartedOnceEveryRankRuns)
    spec = RunSpec(**TINY, method="full", nproc=2)
    record = run_one(PlannedRun("full", spec), "distributed", says_so_then_sleeps, progress=False, timeout_s=2,
                     checkpoint_dir=tmp_path)
    assert (record.status, record.error) == ("timeout", "ran past --run-timeout 2 s and was stopped")
    # The ranks name the run's checkpoint folder on their command lines.
    left = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert all_ended(left)
