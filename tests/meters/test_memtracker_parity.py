"""Our tracker against PyTorch's MemTracker (torch.distributed._tools.mem_tracker) on the same
tiny-LLaMA training step, CPU, float32: the peaks of full, lora and galore agree within 0.1%,
category by category.

Both watch the run's second step at once (two dispatch modes stacked see the same ops), with the
optimizer state the first step made and its batch drawn inside it, as training/loop.train draws
it. MemTracker counts only what it sees made or is given, so it is given the model, the optimizer
and each batch (track_external); ours counts a tensor made before the step from its first use, and
nothing the data pipeline makes. MemTracker's reference types map to our categories so:

  Parameter            trainable_weights + frozen_weights (MemTracker does not tell them apart)
  Gradient             gradients
  Optstate             optimizer_state
  Activation + Temp    activations + the loop's loss scalars
  Buffer + Other       other - the loop's loss scalars (Other: the batch given to it)

The loop's loss scalars are the one difference of definition: MemTracker calls every tensor made
outside the backward and the optimizer step an activation; ours, only a tensor made inside a
module's forward or by the autograd engine. Three float32 scalars that training/loop.optimizer_step
makes fall between: the step's loss sum and the loss divided by grad_accum (made outside any
module), and backward's seed gradient (made by torch.autograd.backward before the engine starts).

At these settings every peak is at the start of the backward (the logits' gradient), where no
optimizer-step temporary is alive: inside the optimizer step MemTracker would count its temporaries
as Optstate and ours as other.
"""

import pytest
import torch
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

from meters.tracker import MemoryTracker
from methods import prepare_training
from tests.conftest import tiny_spec
from training.loop import drawn_ahead, optimizer_step
from workloads import WORKLOADS

FLOAT32_BYTES = 4
LOOP_LOSS_SCALARS = 3
"""The step's loss sum, the loss over grad_accum and backward's seed gradient (module docstring)."""
AGREE_WITHIN = 1e-3


class TrainableOnlyMemTracker(MemTracker):
    """MemTracker with its gradient hooks on trainable parameters only: on torch 2.13 it registers
    them on every parameter a forward uses, and register_hook raises on a frozen one (LoRA's base
    weights)."""

    def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
        figures = super()._track_module_params_and_buffers(module, install_grad_hooks=False)
        for parameter in module.parameters() if install_grad_hooks else ():
            if parameter.requires_grad and parameter not in self._param_to_grad_hook_handles:
                self._param_to_grad_hook_handles[parameter] = (
                    parameter.register_hook(self._count_gradient),
                    parameter.register_post_accumulate_grad_hook(lambda p: self._count_gradient(p.grad)),
                )
        return figures

    def _count_gradient(self, gradient: torch.Tensor):
        self._update_and_maybe_create_winfos(gradient, _MemRefType.GRAD)


def both_peaks(method: str, **spec_fields) -> tuple[int, dict[str, int], dict[str, int]]:
    """(our peak, our breakdown at it, MemTracker's peak snapshot) of the run's second step, its
    batch drawn as training/loop.train draws it: ahead, and untracked by ours."""
    spec = tiny_spec(method=method, batch_size=8, seq_len=32, **spec_fields)
    torch.manual_seed(0)
    workload = WORKLOADS[spec.workload]
    training = prepare_training(workload.build_model(spec), spec, workload)
    ours = MemoryTracker(training.model, training.optimizer)
    theirs = TrainableOnlyMemTracker()
    # MemTracker sees the draw's ops and would call the batch an activation: each batch is given
    # to it as drawn, which makes it Other. map, unlike a generator, keeps no batch alive.
    batches = map(lambda batch: theirs.track_external(*batch.values()) or batch,
                  ours.untracked(drawn_ahead(workload.train_batches(spec))))
    optimizer_step(spec, workload, training, batches, torch.device("cpu"))
    theirs.track_external(training.model, training.optimizer)
    with ours.step(), theirs:
        optimizer_step(spec, workload, training, batches, torch.device("cpu"))
    step = ours.steps[-1]
    return step.peak_bytes, step.at_peak_bytes, theirs.get_tracker_snapshot("peak")[torch.device("cpu")]


@pytest.mark.parametrize("method, spec_fields", [
    ("full", {}),
    ("lora", {"method_options": {"rank": 8}}),
    ("galore", {"lr": 1e-2, "method_options": {"update_proj_gap": 5}}),  # step 1: no projector refresh
])
def test_our_peak_agrees_with_memtrackers_category_by_category(method, spec_fields):
    peak_bytes, ours, theirs = both_peaks(method, **spec_fields)
    loss_scalars_bytes = LOOP_LOSS_SCALARS * FLOAT32_BYTES
    pairs = {
        "weights": (ours["trainable_weights"] + ours["frozen_weights"], theirs["Parameter"]),
        "gradients": (ours["gradients"], theirs["Gradient"]),
        "optimizer_state": (ours["optimizer_state"], theirs["Optstate"]),
        "activations": (ours["activations"] + loss_scalars_bytes, theirs["Activation"] + theirs["Temp"]),
        "other": (ours["other"] - loss_scalars_bytes, theirs["Buffer"] + theirs["Other"]),
        "peak": (peak_bytes, theirs["Total"]),
    }
    for category, (our_bytes, their_bytes) in pairs.items():
        assert our_bytes == pytest.approx(their_bytes, rel=AGREE_WITHIN), category
    assert ours["activations"] > 0 and ours["optimizer_state"] > 0  # the step's peak, with the state in place
