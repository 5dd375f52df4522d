"""Runs on several processes through torchrun (launchers/torchrun/): recorded with every rank's
figures; a rank that raises ends the run as `error`, never a hang; a timeout stops every rank."""

import time

import pytest
import torch

from core.plan import PlannedRun
from core.spec import RunSpec
from launchers.local.parent import run_one
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
    started = time.time()
    record = run_one(PlannedRun("full", spec), "distributed", raises_on_rank_1, progress=False, timeout_s=120,
                     checkpoint_dir=tmp_path)
    assert (record.status, record.error) == ("error", "rank 1: RuntimeError: deliberate failure on rank 1")
    assert time.time() - started < 100  # torchrun's start and imports, not the 120 s timeout
    assert record.world_size == 2 and record.run_id.endswith("-w2")


def test_a_run_on_two_ranks_through_torchrun_is_recorded_with_every_rank(tmp_path):
    spec = RunSpec(**TINY, method="galore", method_options={"rank": 8, "update_proj_gap": 2}, nproc=2)
    record = run_one(PlannedRun("galore", spec), "distributed", train, progress=False, timeout_s=240,
                     checkpoint_dir=tmp_path)
    assert record.status == "ok", record.error
    assert record.world_size == 2
    assert len(record.memory.tracker_peak_bytes_by_rank) == 2
    assert record.memory.tracker_peak_bytes == max(record.memory.tracker_peak_bytes_by_rank)
    assert record.metrics.tokens_per_s > 0 and len(record.metrics.loss_curve) == TINY["steps"]


def sleeps(spec, progress, checkpoint_dir):
    """Stands in for train(): never finishes."""
    time.sleep(600)


def test_a_run_on_two_ranks_past_the_timeout_is_stopped_with_every_rank(tmp_path):
    import psutil

    spec = RunSpec(**TINY, method="full", nproc=2)
    record = run_one(PlannedRun("full", spec), "distributed", sleeps, progress=False, timeout_s=30,
                     checkpoint_dir=tmp_path)
    assert (record.status, record.error) == ("timeout", "ran past --run-timeout 30 s and was stopped")
    # The ranks name the run's checkpoint folder on their command lines.
    left = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    _, alive = psutil.wait_procs(left, timeout=60)
    assert not alive
