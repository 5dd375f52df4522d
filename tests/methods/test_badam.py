"""BAdam: one block trains at a time, with the badam package; the optimizer state is the active
block's AdamW moments and the float32 copy of its weights the package steps."""

import pytest

from core.options import OptionError
from methods import METHODS
from methods.badam import block_prefixes
from tests.conftest import tiny_spec
from tests.methods.test_successors import FLOAT32_BYTES, assert_loss_falls
from training.loop import train
from workloads import WORKLOADS

SWITCH_EVERY = 8
STEPS = 30


def block_state_bytes(model, prefixes: list[str]) -> int:
    """Per parameter whose name one of the prefixes is part of (the package's match): its float32
    copy, AdamW's two float32 moments of it and AdamW's float32 step tensor."""
    sizes = [p.numel() for name, p in model.named_parameters() if any(prefix in name for prefix in prefixes)]
    return sum(3 * n + 1 for n in sizes) * FLOAT32_BYTES


def active_block(blocks: list, steps_done: int) -> int:
    """The block training after `steps_done` steps in descending order: the package starts at the
    last block and switches after each step whose count + 1 is a multiple of SWITCH_EVERY."""
    # A switch right after the last step would leave a block with copies but no moments yet.
    assert (steps_done + 1) % SWITCH_EVERY
    switches = sum(1 for step in range(1, steps_done + 1) if (step + 1) % SWITCH_EVERY == 0)
    return (len(blocks) - 1 - switches) % len(blocks)


def trained(options: dict, lr: float = 3e-3):
    spec = tiny_spec(method="badam", method_options={"switch_every": SWITCH_EVERY, **options}, steps=STEPS, lr=lr,
                     batch_size=8, seq_len=32)
    metrics, memory = train(spec, progress=False)
    return metrics.loss_curve, memory, WORKLOADS["llama"].build_model(spec)


def test_badam_with_embeddings_and_head_always_active_trains_and_keeps_one_layers_state(one_thread):
    curve, memory, model = trained({"outside_layers": "active"})
    assert_loss_falls(curve)
    blocks, always = block_prefixes(model, "active")
    assert len(blocks) == 2  # the tiny LLaMA's two layers, of one size
    expected = block_state_bytes(model, always + blocks[active_block(blocks, STEPS)])
    assert memory.optimizer_state_bytes == memory.tracker_at_step_end_bytes["optimizer_state"] == expected


def test_badam_in_blocks_keeps_only_the_active_blocks_state(one_thread):
    curve, memory, model = trained({})
    blocks, always = block_prefixes(model, "blocks")
    assert not always and len(blocks) == 4  # embeddings, the two layers, final norm and head
    assert sum(curve[-5:]) < sum(curve[:5])
    # The tracked step is step 0: the last block (final norm and head); the run ends in another.
    first = blocks[active_block(blocks, 1)]
    assert memory.tracker_at_step_end_bytes["optimizer_state"] == block_state_bytes(model, first)
    assert active_block(blocks, STEPS) != active_block(blocks, 1)
    assert memory.optimizer_state_bytes == block_state_bytes(model, blocks[active_block(blocks, STEPS)])


@pytest.mark.parametrize("workload, data, outside", [
    ("llama", {}, (["model.embed_tokens.weight"], ["model.norm.weight", "lm_head.weight"])),
    ("roberta_glue", {"task": "synthetic-classification"},
     (["roberta.embeddings.word_embeddings.weight", "roberta.embeddings.token_type_embeddings.weight",
       "roberta.embeddings.LayerNorm.weight", "roberta.embeddings.LayerNorm.bias",
       "roberta.embeddings.position_embeddings.weight"],
      ["classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias"])),
])
def test_blocks_come_from_the_repeated_layers_of_either_architecture(workload, data, outside):
    model = WORKLOADS[workload].build_model(tiny_spec(workload=workload, data=data))
    stack = "model.layers" if workload == "llama" else "roberta.encoder.layer"
    blocks, always = block_prefixes(model, "blocks")
    assert blocks == [outside[0], [f"{stack}.0."], [f"{stack}.1."], outside[1]] and always == []
    blocks, always = block_prefixes(model, "active")
    assert blocks == [[f"{stack}.0."], [f"{stack}.1."]] and always == outside[0] + outside[1]
    prefixes = [prefix for block in blocks for prefix in block] + always
    covered = [name for name, _ in model.named_parameters() if any(prefix in name for prefix in prefixes)]
    assert covered == [name for name, _ in model.named_parameters()]


@pytest.mark.parametrize("method", ["lisa", "badam"])
def test_switching_methods_refuse_checkpoints_in_one_line(method):
    spec = tiny_spec(method=method, checkpoint_every=2)
    workload = WORKLOADS["llama"]
    with pytest.raises(ValueError, match=f"method {method} with checkpoint_every: a resumed run would not restore"):
        METHODS[method].prepare(workload.build_model(spec), spec, METHODS[method].parse_options({}), workload)


@pytest.mark.parametrize("options, refused", [
    ({"switch_every": 0}, "options.switch_every must be >= 1"),
    ({"switch_mode": "cyclic"}, "accepted: descending, ascending, random, fixed"),
    ({"outside_layers": "frozen"}, "accepted: blocks, active"),
])
def test_badam_refuses_options_out_of_range_in_one_line(options, refused):
    with pytest.raises(OptionError, match=refused):
        METHODS["badam"].parse_options(options)
