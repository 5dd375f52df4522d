"""Traced estimates of one FSDP2 rank of N (estimates/fake_ranks.py): the rank's figures are what
a real rank of a gloo run holds, a rank holds 1/N of the weights and optimizer state, the fit
searches the micro-batch per rank, and what cannot be traced on several ranks is refused."""

from dataclasses import replace

import pytest

import harness
from core.spec import RunSpec
from estimates.traced import traced_steps
from tests.training.test_parallel import TINY, train_on_ranks


def _outside_blocks_bytes(spec: RunSpec) -> int:
    """Bytes of the parameters FSDP2's root unit holds (embeddings, head, final norm): those
    outside the decoder blocks, each sharded by its own fully_shard."""
    from workloads import WORKLOADS

    model = WORKLOADS[spec.workload].build_model(spec)
    in_blocks = {id(p) for block in model.model.layers for p in block.parameters()}
    return sum(p.numel() * p.element_size() for p in model.parameters() if id(p) not in in_blocks)


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("method, options", [("full", {}), ("galore8bit", {"rank": 4, "update_proj_gap": 2}),
                                             ("muon", {})])
def test_a_traced_rank_holds_what_a_real_fsdp2_rank_holds(method, options, tmp_path):
    spec = RunSpec(**{**TINY, "timing_warmup_steps": 2}, method=method, method_options=options, nproc=2,
                   sharding="fsdp2")
    measured = train_on_ranks(spec, 2, tmp_path, checked_weights=False)["memory"]
    traced, notes = traced_steps(replace(spec, steps=2), steps=2, as_cuda=False)
    assert any("one rank of 2 under FSDP2" in note for note in notes)
    step_end = traced[-1].at_step_end_bytes
    assert step_end["trainable_weights"] == measured["trainable_weight_bytes"]
    assert step_end["optimizer_state"] == measured["optimizer_state_bytes"]
    # The same two tracked steps. Gloo's reduce-scatter copies its input whole before it cuts
    # (NCCL's does not, and the fake process group moves nothing): the real peak falls there, in
    # the root's reduce-scatter, which is the parameters outside the blocks in size.
    traced_peak = max(step.peak_bytes for step in traced)
    assert traced_peak <= measured["tracker_peak_bytes"] <= traced_peak + _outside_blocks_bytes(spec)


@pytest.mark.parametrize("method", ["full", "galore", "apollo"])
def test_a_traced_rank_of_four_holds_a_quarter_of_the_weights_and_state(method):
    options = {} if method == "full" else {"rank": 4}
    one = RunSpec(**TINY, method=method, method_options=options)
    whole = traced_steps(replace(one, steps=2), steps=2, as_cuda=False)[0][-1].at_step_end_bytes
    rank = traced_steps(replace(one, steps=2, nproc=4, sharding="fsdp2"), steps=2,
                        as_cuda=False)[0][-1].at_step_end_bytes
    assert rank["trainable_weights"] == whole["trainable_weights"] / 4
    # Every rank keeps each parameter's step counter whole (the 4096 bytes), APOLLO its whole
    # random projection too (README, methods table).
    share = 0.3 if method == "apollo" else 0.25
    assert rank["optimizer_state"] <= whole["optimizer_state"] * share + 4096


def test_the_fit_searches_the_micro_batch_per_rank_and_says_so(capsys):
    common = ["estimate", "--size", "tiny", "--seq", "64", "--method", "full", "--dtype", "float32", "--jobs", "1",
              "--fit", "1.02GiB"]
    assert harness.main(common) == 0
    one = capsys.readouterr().out
    assert harness.main(common + ["--nproc", "4", "--sharding", "fsdp2"]) == 0
    sharded = capsys.readouterr().out
    assert "per rank, FSDP2 on 4 ranks" in sharded and "per rank" not in one
    batch_of = {text: int(next(line for line in out.splitlines() if line.startswith("full")).split()[2])
                for text, out in (("one", one), ("sharded", sharded))}
    # A rank holds a quarter of the weights, gradients and state: more of the budget is left for
    # activations.
    assert batch_of["sharded"] > batch_of["one"] > 0


def test_several_ranks_without_fsdp2_are_refused_in_one_line(capsys):
    assert harness.main(["estimate", "--size", "tiny", "--method", "full", "--nproc", "2"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert "--nproc 2 with --sharding none: the traced estimate models several ranks with --sharding fsdp2 only" in error
