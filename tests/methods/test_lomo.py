"""LOMO and AdaLOMO (lomo-optim) driven by our layer-wise hooks: they train the tiny LLaMA, keep
exactly their papers' state, free every gradient in the backward, and take the steps of the
package's own fused_backward (AdaLOMO) or of plain SGD (LOMO) under gradient accumulation."""

import copy
from unittest import mock

import pytest
import torch
from lomo_optim import AdaLomo

from methods import prepare_training
from methods.base import Training, warmup_cosine_schedule
from tests.conftest import tiny_spec
from tests.methods.test_successors import FLOAT32_BYTES, assert_loss_falls, trained
from training.loop import optimizer_step
from workloads import WORKLOADS

LOMO_LR = 1.5
"""LOMO is plain SGD: from the tiny LLaMA's initialisation (weights of RMS 0.02) it needs a
step near 1 to learn in 30 steps (measured: lr 0.1 lowers the loss by 0.05, 1.5 by 0.33, 5
by less, 10 diverges)."""
ADALOMO_LR = 0.1
"""AdaLOMO's step is relative, lr x the parameter's RMS (0.02 here): 0.1 moves each weight by
about 2e-3 per step (measured: 1e-2 lowers the loss by 0.05 in 30 steps, 0.1 by 1.0)."""


def adalomo_state_elements(model) -> int:
    """AdaLOMO's paper (Adafactor's factored second moment): a row and a column vector per
    matrix, m + n for an m x n weight, and a full vector for a 1-D tensor (the norms); the
    package keeps nothing else (no first moment, its step count a Python int)."""
    return sum(p.shape[0] + p.shape[1] if p.dim() == 2 else p.numel() for p in model.parameters())


def test_lomo_trains_and_keeps_no_optimizer_state(one_thread):
    curve, state_bytes, _ = trained("lomo", {}, lr=LOMO_LR)
    assert_loss_falls(curve)
    assert state_bytes == 0


def test_adalomo_trains_and_keeps_factored_second_moments(one_thread):
    curve, state_bytes, model = trained("adalomo", {}, lr=ADALOMO_LR)
    assert_loss_falls(curve)
    assert state_bytes == adalomo_state_elements(model) * FLOAT32_BYTES


def prepared(spec):
    torch.manual_seed(0)
    model = WORKLOADS["llama"].build_model(spec)
    return prepare_training(model, spec, WORKLOADS["llama"])


@pytest.mark.parametrize("method", ["lomo", "adalomo"])
def test_every_gradient_is_freed_within_the_backward(method):
    spec = tiny_spec(method=method, steps=2, grad_accum=2, batch_size=2, seq_len=16)
    training = prepared(spec)
    assert training.steps_in_backward
    batches = WORKLOADS["llama"].train_batches(spec)
    before = [p.detach().clone() for p in training.model.parameters()]
    optimizer_step(spec, WORKLOADS["llama"], training, batches, torch.device("cpu"))
    assert all(p.grad is None for p in training.model.parameters())
    assert all(not torch.equal(p, b) for p, b in zip(training.model.parameters(), before))


def test_lomo_with_accumulation_takes_the_steps_of_plain_sgd():
    """LOMO's update is SGD's with decoupled weight decay, p(1 - lr wd) - lr g, which torch's SGD
    without momentum computes too; 3 micro-batches per step, the schedule reaching the hooks."""
    spec = tiny_spec(method="lomo", steps=4, grad_accum=3, batch_size=2, seq_len=16, lr=0.5, weight_decay=0.1,
                     conventions="reference")
    lomo = prepared(spec)
    model = copy.deepcopy(lomo.model)
    sgd = torch.optim.SGD(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    reference = Training(model=model, optimizer=sgd, scheduler=warmup_cosine_schedule(sgd, spec))
    workload = WORKLOADS["llama"]
    batches, reference_batches = workload.train_batches(spec), workload.train_batches(spec)
    for step in range(spec.steps):
        for training, stream in ((lomo, batches), (reference, reference_batches)):
            optimizer_step(spec, workload, training, stream, torch.device("cpu"))
            training.scheduler.step()
        for p, reference_p in zip(lomo.model.parameters(), reference.model.parameters()):
            torch.testing.assert_close(p, reference_p, rtol=1e-5, atol=1e-6, msg=lambda m: f"step {step}: {m}")


def test_adalomo_takes_the_steps_of_the_packages_own_fused_backward():
    """The package's AdaLomo on the whole model, its own hooks and fused_backward(loss, lr), at
    the lr our schedule gives each step (loss_scale 0 as ours; .cuda() kept on CPU)."""
    spec = tiny_spec(method="adalomo", steps=4, batch_size=2, seq_len=16, lr=0.1, weight_decay=0.1,
                     conventions="reference")
    ours = prepared(spec)
    model = copy.deepcopy(ours.model)
    with mock.patch.object(torch.Tensor, "cuda", lambda tensor, *args, **kwargs: tensor):
        package = AdaLomo(model, lr=spec.lr, weight_decay=spec.weight_decay, loss_scale=0)
    workload = WORKLOADS["llama"]
    batches, package_batches = workload.train_batches(spec), workload.train_batches(spec)
    for step in range(spec.steps):
        lr = ours.scheduler.get_last_lr()[0]
        optimizer_step(spec, workload, ours, batches, torch.device("cpu"))
        ours.scheduler.step()
        package.fused_backward(workload.loss(model, next(package_batches)), lr)
        for p, package_p in zip(ours.model.parameters(), model.parameters()):
            torch.testing.assert_close(p, package_p, rtol=1e-5, atol=1e-6, msg=lambda m: f"step {step}: {m}")


@pytest.mark.parametrize("method", ["lomo", "adalomo"])
def test_gradient_clipping_across_layers_is_refused_in_one_line(method):
    spec = tiny_spec(method=method, grad_clip=1.0)
    with pytest.raises(ValueError, match=r"grad_clip = 1.0 cannot be honoured by layer-wise updates") as error:
        prepared(spec)
    assert "\n" not in str(error.value)


def test_a_resumed_adalomo_run_reads_its_moments_from_the_checkpoint(tmp_path, monkeypatch, one_thread):
    """Loading a checkpoint replaces the optimizer state's tensors; the package must update
    those, not the zeros it allocated (its own dicts are pointed at the state each step)."""
    import training.loop as train_module

    spec = tiny_spec(method="adalomo", steps=6, checkpoint_every=2, grad_accum=2, lr=ADALOMO_LR, timing_warmup_steps=1)
    whole, _ = train_module.train(spec, progress=False)
    real_step = train_module.training_step

    def stopped_in_step_3(spec, workload, training, batches, device, step, ranks=None):
        if step == 3:
            raise KeyboardInterrupt("stopped from outside")
        return real_step(spec, workload, training, batches, device, step, ranks)

    monkeypatch.setattr(train_module, "training_step", stopped_in_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(spec, progress=False, checkpoint_dir=tmp_path)
    monkeypatch.undo()
    resumed, _ = train_module.train(spec, progress=False, checkpoint_dir=tmp_path)
    assert resumed.loss_curve == whole.loss_curve
