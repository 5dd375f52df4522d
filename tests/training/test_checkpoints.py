"""A run stopped mid-way resumes from its last checkpoint and repeats the uninterrupted run's
losses exactly (seeded, CPU)."""

import pytest
import torch

import training.loop as train_module
from tests.conftest import tiny_spec
from training.checkpoints import CHECKPOINT_FILE
from training.loop import train

METHODS = {
    "full": {},
    "adam8bit": {},
    "lora": {"rank": 4},  # dropout draws from the RNG
    "relora": {"rank": 4, "reset_interval": 3, "restart_warmup_steps": 1},  # a merge before and after the stop
    "galore8bit": {"update_proj_gap": 3},  # projectors refreshed before and after the stop
    "galore8bit_layerwise": {"update_proj_gap": 3},
    "q_galore": {"update_proj_gap": 1, "queue_size": 2},  # refreshes and stochastic rounding before and after the stop
}


@pytest.mark.parametrize("method", list(METHODS))
def test_a_resumed_run_repeats_the_uninterrupted_losses(method, tmp_path, monkeypatch, one_thread):
    spec = tiny_spec(method=method, method_options=METHODS[method], steps=8, checkpoint_every=2, grad_accum=2,
                     timing_warmup_steps=3, eval_batches=1)
    whole_metrics, whole_memory = train(spec, progress=False)

    real_step = train_module.training_step

    def stopped_in_step_5(spec, workload, training, batches, device, step, ranks=None):
        if step == 5:
            raise KeyboardInterrupt("stopped from outside")
        return real_step(spec, workload, training, batches, device, step, ranks)

    monkeypatch.setattr(train_module, "training_step", stopped_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(spec, progress=False, checkpoint_dir=tmp_path)
    monkeypatch.undo()
    assert (tmp_path / CHECKPOINT_FILE).exists()

    resumed_metrics, resumed_memory = train(spec, progress=False, checkpoint_dir=tmp_path)
    assert resumed_metrics.loss_curve == whole_metrics.loss_curve
    assert resumed_metrics.eval_loss == whole_metrics.eval_loss
    assert resumed_memory.tracker_at_peak_bytes == whole_memory.tracker_at_peak_bytes
    assert resumed_memory.optimizer_state_bytes == whole_memory.optimizer_state_bytes


def stopped_once_in_step_5(spec, progress, checkpoint_dir):
    """Stands in for train(): the first attempt is stopped in step 5, as by a signal; the next
    one trains (resuming from the checkpoint the first left)."""
    first_attempt = checkpoint_dir.parent / f"{spec.run_id}.attempted"
    if not first_attempt.exists():
        first_attempt.parent.mkdir(parents=True, exist_ok=True)
        first_attempt.touch()
        real_step = train_module.training_step

        def stop_in_step_5(spec, workload, training, batches, device, step, ranks=None):
            if step == 5:
                raise KeyboardInterrupt("stopped from outside")
            return real_step(spec, workload, training, batches, device, step, ranks)

        train_module.training_step = stop_in_step_5
    return train(spec, progress=progress, checkpoint_dir=checkpoint_dir)


@pytest.mark.slow  # starts worker processes
def test_the_runner_resumes_a_killed_run_from_its_checkpoint(write_suite, tmp_path):
    from launchers.suite_runner import checkpoints_of
    from suites.load import load_suite
    from tests.conftest import run_locally

    suite = load_suite(write_suite("""
        [defaults]
        steps = 8
        checkpoint_every = 2
        batch_size = 4
        seq_len = 32
        eval_batches = 1
        timing_warmup_steps = 1
        device = "cpu"
        [[workloads]]
        name = "llama"
        size = "tiny"
        [[methods]]
        name = "galore8bit"
        options = { update_proj_gap = 3 }
    """))
    results = tmp_path / "r.jsonl"
    [killed] = run_locally(suite, results, train_function=stopped_once_in_step_5, progress=False)
    assert (killed.status, killed.error) == ("killed", "KeyboardInterrupt: stopped from outside")
    [resumed] = run_locally(suite, results, train_function=stopped_once_in_step_5, progress=False)
    whole, _ = train(suite.runs[0].spec, progress=False)
    assert resumed.status == "ok" and resumed.metrics.loss_curve == whole.loss_curve
    assert not (checkpoints_of(results) / resumed.run_id).exists()  # a finished run keeps no checkpoint


@pytest.mark.slow  # starts worker processes
@pytest.mark.parametrize("content", ["cut short", "not ours"])
def test_a_checkpoint_that_cannot_be_loaded_is_set_aside_and_the_run_starts_over(content, write_suite, tmp_path):
    """It blocked its run for good: every resume recorded torch's refusal, named no file and kept it."""
    import datetime

    from launchers.suite_runner import checkpoints_of
    from suites.load import load_suite
    from tests.conftest import run_locally

    suite = load_suite(write_suite("""
        [defaults]
        steps = 4
        checkpoint_every = 2
        batch_size = 4
        seq_len = 32
        eval_batches = 1
        timing_warmup_steps = 1
        device = "cpu"
        [[workloads]]
        name = "llama"
        size = "tiny"
        [[methods]]
        name = "full"
    """))
    results = tmp_path / "r.jsonl"
    folder = checkpoints_of(results) / suite.runs[0].spec.run_id
    folder.mkdir(parents=True)
    if content == "cut short":
        (folder / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 a zip archive's first bytes, then nothing")
    else:  # a pickled object weights_only refuses to build
        torch.save({"steps_done": 2, "written": datetime.datetime(2026, 1, 1)}, folder / CHECKPOINT_FILE)
    [record] = run_locally(suite, results, progress=False)
    assert record.status == "ok" and len(record.metrics.loss_curve) == 4  # from step 0
    [aside] = list(folder.parent.glob(f"{folder.name}.unreadable-*.pt"))
    [note] = record.notes
    assert note.startswith(f"checkpoint {folder / CHECKPOINT_FILE} could not be loaded (") and note.endswith(
        f"); moved to {aside}; the run started from step 0")
    assert "weights_only=False" not in note and not folder.exists()  # the file is kept, beside the finished run
