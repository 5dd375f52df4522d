"""conventions = "hf" trains as transformers' Trainer does: the tiny LLaMA, from the same initial
weights, on the same batches in the same order and the same schedule, reaches the same losses
through our training loop as through Trainer (GaLore: to float32 rounding); and the param groups
decay what the Trainer's do, where "reference" decays every tensor."""

import itertools

import pytest
import torch
from torch.utils.data import IterableDataset
from transformers import Trainer, TrainingArguments, default_data_collator

from methods import prepare_training
from tests.conftest import tiny_spec
from training.loop import train
from workloads import WORKLOADS

STEPS = 10
WEIGHT_DECAY = 0.1
"""Non-zero, so that which tensors it reaches decides the losses."""
HF_TARGETS = ("self_attn", "mlp")
"""Substrings of the attention and MLP Linear layers' names: Hugging Face's optim_target_modules
rule takes them, the reference's suffix rule matches nothing with them."""
GALORE_OPTIONS = {"rank": 8, "update_proj_gap": 4, "scale": 0.25, "proj_type": "std"}
"""T = 4: the projectors are recomputed at steps 0, 4 and 8 of the 10."""
APOLLO_OPTIONS = {"rank": 8, "update_proj_gap": 4}
ROBERTA = {"workload": "roberta_glue", "data": {"task": "synthetic-classification"}}
"""The tiny RoBERTa has what the LLaMA lacks: biases and LayerNorms."""


def parity_spec(method: str, options: dict | None = None, conventions: str = "hf"):
    return tiny_spec(method=method, method_options=options or {}, steps=STEPS, lr=1e-2, weight_decay=WEIGHT_DECAY,
                     conventions=conventions, timing_warmup_steps=0, eval_batches=0)


def our_losses(spec) -> list[float]:
    return train(spec, progress=False)[0].loss_curve


class Rows(IterableDataset):
    """Our workload's training batches for the spec's steps, row by row and in order: the Trainer's
    collator stacks each batch_size rows back into one of our batches, one per step."""

    def __init__(self, spec):
        self.spec = spec

    def __iter__(self):
        for batch in itertools.islice(WORKLOADS[self.spec.workload].train_batches(self.spec), self.spec.steps):
            for row in range(self.spec.batch_size):
                yield {name: tensor[row] for name, tensor in batch.items()}


class LossRecordingTrainer(Trainer):
    """Trainer keeping each step's training loss unrounded (its logs round to 4 digits)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.losses = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.losses.append(loss.item())
        return loss


def trainer_losses(spec, output_dir, **optimizer_args) -> list[float]:
    """The losses of transformers' Trainer on the spec's model, batches and schedule."""
    # As training/loop.train builds its model: the same seed, the same initial weights.
    torch.manual_seed(spec.seed)
    model = WORKLOADS[spec.workload].build_model(spec)
    args = TrainingArguments(
        output_dir=str(output_dir), use_cpu=True, max_steps=spec.steps, per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.lr, weight_decay=spec.weight_decay,
        # methods/base.py warmup_cosine_schedule: int(warmup_fraction * steps) linear steps, cosine to 10%.
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=int(spec.warmup_fraction * spec.steps),
        max_grad_norm=0.0,  # the Trainer clips only when max_grad_norm > 0; our grad_clip 0 does not clip
        remove_unused_columns=False, report_to="none", save_strategy="no", logging_strategy="no",
        disable_tqdm=True, dataloader_num_workers=0, **optimizer_args,
    )
    trainer = LossRecordingTrainer(model=model, args=args, train_dataset=Rows(spec),
                                   data_collator=default_data_collator)
    trainer.train()
    return trainer.losses


def optim_args(options: dict) -> str:
    return ",".join(f"{name}={value}" for name, value in options.items())


def test_full_matches_trainer_adamw_torch_bit_for_bit(tmp_path, one_thread):
    # Trainer's adamw_torch leaves foreach to torch, which takes the single-tensor path on CPU;
    # ours takes the foreach path. Both do the same float32 operations on each tensor, so the
    # losses agree exactly.
    spec = parity_spec("full")
    theirs = trainer_losses(spec, tmp_path, optim="adamw_torch")
    assert our_losses(spec) == theirs
    # And the test can tell: decaying the RMSNorm weights too moves the losses off theirs.
    assert our_losses(parity_spec("full", conventions="reference")) != theirs


def test_galore_matches_trainer_galore_adamw_to_float32_rounding(tmp_path, one_thread):
    options = {**GALORE_OPTIONS, "target_modules": HF_TARGETS}
    theirs = trainer_losses(parity_spec("galore"), tmp_path, optim="galore_adamw",
                            optim_target_modules=list(HF_TARGETS), optim_args=optim_args(GALORE_OPTIONS))
    # galore_ref steps galore-torch's own GaLoreAdamW, the Trainer's optimizer, in the groups we
    # build: equal losses say the groups, the weight decay and the eps are the Trainer's.
    assert our_losses(parity_spec("galore_ref", options)) == theirs
    # Our GaLoreAdamW computes the same update in another float32 order (lerp for the first
    # moment, a reciprocal times m for m / (√v + eps), the projection back accumulated into the
    # weight): over 10 steps the losses of about 7.5 part by at most 1 ulp (4.8e-7).
    torch.testing.assert_close(our_losses(parity_spec("galore", options)), theirs, rtol=1e-6, atol=0)


def test_apollo_matches_trainer_apollo_adamw_bit_for_bit(tmp_path, one_thread):
    # Both step apollo-torch's APOLLOAdamW: equal losses say the groups, the weight decay and
    # each group's eps (1e-8 projected, 1e-6 plain) are the Trainer's.
    options = {**APOLLO_OPTIONS, "target_modules": HF_TARGETS}
    theirs = trainer_losses(parity_spec("apollo"), tmp_path, optim="apollo_adamw",
                            optim_target_modules=list(HF_TARGETS), optim_args=optim_args(APOLLO_OPTIONS))
    assert our_losses(parity_spec("apollo", options)) == theirs


def prepared(method: str, conventions: str, workload: str = "roberta_glue", options: dict | None = None):
    spec = tiny_spec(**({} if workload == "llama" else ROBERTA), method=method, method_options=options or {},
                     weight_decay=WEIGHT_DECAY, conventions=conventions)
    torch.manual_seed(0)
    return prepare_training(WORKLOADS[spec.workload].build_model(spec), spec, WORKLOADS[spec.workload])


def weight_decay_by_name(training) -> dict[str, float]:
    """Each optimized parameter's name -> the weight decay of its param group."""
    decay_of = {id(p): group["weight_decay"] for group in training.optimizer.param_groups for p in group["params"]}
    return {name: decay_of[id(p)] for name, p in training.model.named_parameters() if id(p) in decay_of}


def is_norm_or_bias(model, name: str) -> bool:
    owner_name, _, tensor_name = name.rpartition(".")
    return tensor_name == "bias" or type(model.get_submodule(owner_name)).__name__.endswith("Norm")


ADAMW_FAMILY = ("full", "adam8bit", "lora", "relora", "low_rank", "full_layerwise", "adam8bit_layerwise",
                "torchao_adamw8bit")


@pytest.mark.parametrize("method", ADAMW_FAMILY)
def test_hf_leaves_norms_and_biases_undecayed_and_reference_decays_them(method):
    hf = prepared(method, "hf")
    decays = weight_decay_by_name(hf)
    exempt = {name for name in decays if is_norm_or_bias(hf.model, name)}
    assert exempt and exempt != set(decays)
    assert {name for name, decay in decays.items() if decay == 0.0} == exempt
    assert {decays[name] for name in set(decays) - exempt} == {WEIGHT_DECAY}
    assert set(weight_decay_by_name(prepared(method, "reference")).values()) == {WEIGHT_DECAY}


@pytest.mark.parametrize("method, hf_weight_decay", [
    ("galore", 0.0), ("galore_layerwise", 0.0), ("galore_ref", 0.0), ("galore8bit", 1e-2),
    ("galore8bit_layerwise", 1e-2), ("apollo", 0.0), ("apollo_mini", 0.0), ("apollo_layerwise", 0.0),
])
def test_hf_builds_galore_and_apollo_with_their_optimizers_default_weight_decay(method, hf_weight_decay):
    # The Trainer passes galore_* and apollo_* optimizers the lr alone: every tensor, norms and
    # projected weights alike, gets the class's default, whatever weight_decay says.
    assert set(weight_decay_by_name(prepared(method, "hf")).values()) == {hf_weight_decay}
    assert set(weight_decay_by_name(prepared(method, "reference")).values()) == {WEIGHT_DECAY}


@pytest.mark.parametrize("conventions, projected_eps", [("hf", 1e-8), ("reference", 1e-6)])
def test_apollo_projected_group_takes_the_trainers_adam_epsilon_under_hf(conventions, projected_eps):
    plain, projected = prepared("apollo", conventions).optimizer.param_groups
    assert (plain["eps"], projected["eps"]) == (1e-6, projected_eps)


@pytest.mark.parametrize("method", ["galore", "apollo", "fira"])
def test_hf_matches_target_modules_by_substring_among_linear_layers(method):
    training = prepared(method, "hf", workload="llama", options={"target_modules": HF_TARGETS})
    projected = {id(p) for group in training.optimizer.param_groups if "rank" in group for p in group["params"]}
    linears = {id(m.weight) for name, m in training.model.named_modules()
               if isinstance(m, torch.nn.Linear) and set(name.split(".")) & set(HF_TARGETS)}
    assert projected == linears and len(linears) == 2 * 7  # 2 layers x 7 attention and MLP Linears
    with pytest.raises(ValueError, match=r"options.target_modules \['self_attn', 'mlp'\] matches no Linear layer"):
        prepared(method, "reference", workload="llama", options={"target_modules": HF_TARGETS})
