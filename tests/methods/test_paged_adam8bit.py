"""paged_adam8bit: bitsandbytes' PagedAdamW8bit keeps adam8bit's 8-bit states; on CPU, where
bitsandbytes pages nothing, it is adam8bit, and its records say so."""

import math

import pytest

from estimates.traced import traced_steps
from suites.load import load_suite
from tests.conftest import run_locally, tiny_spec
from tests.methods.test_successors import FLOAT32_BYTES, assert_loss_falls, trained
from training.loop import train

BLOCK = 256
"""bitsandbytes' blockwise 8-bit Adam: one float32 absmax per 256 elements."""
MIN_8BIT_SIZE = 4096
QUANTIZATION_MAP_ENTRIES = 256
SUITE = """
    name = "paged"
    [defaults]
    steps = 3
    timing_warmup_steps = 1
    device = "cpu"
    [[workloads]]
    name = "llama"
    size = "tiny"
    [[methods]]
    name = "paged_adam8bit"
"""


def adam8bit_state_bytes(model) -> int:
    """The 8-bit Adam paper's state: two moments of 1 byte per element and a float32 absmax per
    block, for tensors of at least 4096 elements (bitsandbytes' min_8bit_size); float32 moments
    below. bitsandbytes adds its two quantization maps (256 float32 each), shared by every
    tensor's state and so counted once."""
    total = 0
    for p in model.parameters():
        n = p.numel()
        total += 2 * (n + math.ceil(n / BLOCK) * FLOAT32_BYTES) if n >= MIN_8BIT_SIZE else 2 * n * FLOAT32_BYTES
    return total + 2 * QUANTIZATION_MAP_ENTRIES * FLOAT32_BYTES


def test_paged_adam8bit_trains_and_keeps_adam8bits_state(one_thread):
    curve, state_bytes, model = trained("paged_adam8bit", {})
    assert_loss_falls(curve)
    assert state_bytes == adam8bit_state_bytes(model)


def test_on_cpu_it_takes_adam8bits_steps(one_thread):
    paged = train(tiny_spec(method="paged_adam8bit", steps=3), progress=False)[0].loss_curve
    assert paged == train(tiny_spec(method="adam8bit", steps=3), progress=False)[0].loss_curve


@pytest.mark.slow
def test_a_cpu_runs_record_says_nothing_was_paged(write_suite, tmp_path):
    """Through the local launcher, as `harness.py run` records it."""
    suite = load_suite(write_suite(SUITE))
    [record] = run_locally(suite, tmp_path / "paged.jsonl", progress=False)
    assert record.status == "ok"
    [note] = record.notes
    assert "bitsandbytes pages nothing on CPU" in note and "adam8bit" in note


def test_a_traced_estimate_counts_the_paged_states_as_device_bytes():
    _, notes = traced_steps(tiny_spec(method="paged_adam8bit"), steps=1)
    assert any(note.startswith("paged_adam8bit: paged states counted as device bytes") for note in notes)
