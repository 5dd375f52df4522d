"""Runs on several ranks (training/parallel.py): two ranks on gloo take the steps one process
takes with the same global batch (the Markov corpus and local text alike), hold identical
weights after every step, all-reduce once per step whatever the accumulation, and FSDP2 matches
the unsharded run; what cannot run on several ranks is refused in one line."""

import os
import socket
import time
from dataclasses import asdict, replace

import pytest
import torch

from core.spec import RunSpec
from launchers.local.parent import WORKERS
from tests.process_events import HANG_GUARD_S
from tests.text_fixtures import make_c4_dir, make_tokenizer_dir

pytestmark = [pytest.mark.distributed, pytest.mark.slow]  # ranks forked from the fork server, gloo

TINY = dict(workload="llama", size="tiny", steps=4, batch_size=4, seq_len=16, eval_batches=1,
            timing_warmup_steps=1, device="cpu", lr=3e-3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _full_weights(model) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    return {name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()
            for name, p in model.named_parameters()}


def _assert_same_on_every_rank(weights: dict[str, torch.Tensor], step: int):
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    flat = torch.cat([w.flatten().float() for w in weights.values()])
    every_rank = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(every_rank, flat)
    # Every rank gathers the same tensors, so every rank raises together: none waits for another.
    for rank, theirs in enumerate(every_rank):
        assert torch.equal(theirs, every_rank[0]), f"after step {step} rank {rank}'s weights differ from rank 0's"


def _one_rank(rank: int, world: int, port: int, spec_json: dict, result_path: str, checked_weights: bool = True):
    """One rank, as torchrun would start it (the env:// variables), training with a check after
    every step that all ranks hold the same weights; rank 0 saves losses, memory, final weights.
    Without checked_weights it trains as a run does (the checks' whole copies of the weights
    would sit in its memory figures) and saves no weights."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel

    import training.loop as train_module
    from methods import prepare_training
    from training import parallel

    final, all_reduces = {}, []

    def checked(model, spec, workload):
        training = prepare_training(model, spec, workload)
        method_after_step = training.after_step

        def after_step(step):
            if method_after_step:
                method_after_step(step)  # ReLoRA's merge and reset come before the check
            weights = _full_weights(training.model)
            if spec.sharding == "none":
                _assert_same_on_every_rank(weights, step)
            final.update(weights)

        return replace(training, after_step=after_step)

    real_wrap = parallel.wrap

    def counted(training, spec, ranks):
        """DDP's all-reduces counted, one per gradient bucket each time it syncs."""
        wrapped = real_wrap(training, spec, ranks)
        if isinstance(wrapped.model, DistributedDataParallel):
            wrapped.model.register_comm_hook(None, lambda state, bucket: all_reduces.append(1) or allreduce_hook(
                None, bucket))
        return wrapped

    if checked_weights:
        train_module.prepare_training = checked
    parallel.wrap = counted
    try:
        metrics, memory = train_module.train(RunSpec(**spec_json), progress=False)
    except BaseException as error:
        torch.save({"error": f"rank {rank}: {type(error).__name__}: {error}"}, f"{result_path}.{rank}")
        raise
    if rank == 0:
        torch.save({"losses": metrics.loss_curve, "memory": asdict(memory), "weights": final,
                    "all_reduces": len(all_reduces)}, result_path)


def train_on_ranks(spec: RunSpec, world: int, tmp_path, checked_weights: bool = True) -> dict:
    """Train `spec` on `world` processes forked from the local launcher's fork server; rank 0's
    results (checked_weights: see _one_rank)."""
    result_path = str(tmp_path / f"result-{world}.pt")
    port = _free_port()
    ranks = [WORKERS.Process(target=_one_rank, args=(rank, world, port, spec.to_json(), result_path, checked_weights))
             for rank in range(world)]
    for process in ranks:
        process.start()
    deadline = time.time() + HANG_GUARD_S  # a hang guard: ranks still running then are killed
    for process in ranks:
        process.join(max(1.0, deadline - time.time()))
    for process in ranks:
        if process.is_alive():
            process.kill()
    errors = [torch.load(f"{result_path}.{rank}")["error"] for rank in range(world)
              if os.path.exists(f"{result_path}.{rank}")]
    assert not errors, errors[0]
    assert all(process.exitcode == 0 for process in ranks), [process.exitcode for process in ranks]
    return torch.load(result_path)


def assert_same_training(one: dict, two: dict, loss_tolerance: float, weight_tolerance: float):
    assert len(one["losses"]) == len(two["losses"]) == TINY["steps"]
    assert two["losses"] == pytest.approx(one["losses"], abs=loss_tolerance)
    assert one["weights"].keys() == two["weights"].keys()
    for name, weight in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], weight, atol=weight_tolerance, rtol=0, msg=name)


TOLERANCES = {"galore8bit": (1e-3, 1e-3), "adam8bit": (1e-3, 1e-3), "galore8bit_layerwise": (1e-3, 1e-3),
              "adam8bit_layerwise": (1e-3, 1e-3), "paged_adam8bit": (1e-3, 1e-3)}
"""8-bit moments: a gradient that differs in its last bits can land in the next quantization bucket."""
TOLERANCES["q_galore"] = (1e-5, 3.0)
"""INT8 weights, compared as raw uint8 codes: a gradient that differs in its last bits (gloo sums in
another order) can flip an element's stochastic rounding by one level and move a group's zero point
by one (its min crossing a rounding boundary), which shifts that group's codes by one; up to 3
levels were seen, most codes equal. The ranks still hold identical weights after every step (same
rounding seed) and the losses agree to 1e-5."""
TOLERANCES["muon"] = (1e-4, 1e-3)
"""Muon orthogonalises in bfloat16: a gradient that differs in its last bits can round to the next
bfloat16 value, and AdamW turns the difference into up to 8e-4 in entries of the embeddings whose
gradients are near 0 (measured; losses 1.05e-5)."""


@pytest.mark.parametrize("method, options", [
    ("full", {}),
    ("adam8bit", {}),
    ("lora", {"dropout": 0.0}),
    ("dora", {"dropout": 0.0}),
    ("pissa", {"dropout": 0.0}),
    ("pissa", {"dropout": 0.0, "init": "pissa_niter_2"}),  # a randomized SVD: each rank draws the same
    ("qlora", {"dropout": 0.0}),
    ("relora", {"dropout": 0.0, "reset_interval": 2, "restart_warmup_steps": 1}),
    # 32-bit GaLore at rank 6: the mean of the ranks' gradients differs from one process's in
    # its last bits, and at ranks 4, 8 (on one torch thread, as make test runs) and 16 LAPACK
    # then gives a singular vector of the second refresh the other sign, which the moments kept
    # across it turn into 5e-4 in a weight (measured; the FSDP2 test below says the same).
    ("galore", {"rank": 6, "update_proj_gap": 2}),
    ("galore8bit", {"rank": 8, "update_proj_gap": 2}),
    ("full_layerwise", {}),
    ("adam8bit_layerwise", {}),
    ("galore_layerwise", {"rank": 6, "update_proj_gap": 2}),
    ("galore8bit_layerwise", {"rank": 8, "update_proj_gap": 2}),
    ("q_galore", {"rank": 8, "update_proj_gap": 2}),
    ("muon", {}),
    ("lomo", {}),
    ("adalomo", {}),
    ("paged_adam8bit", {}),
])
def test_two_ranks_take_the_steps_of_one_process_with_the_same_global_batch(method, options, tmp_path):
    one = RunSpec(**TINY, method=method, method_options=options)
    reference = train_on_ranks(one, 1, tmp_path)
    on_two = train_on_ranks(replace(one, nproc=2), 2, tmp_path)  # every rank checked identical after every step
    assert_same_training(reference, on_two, *TOLERANCES.get(method, (1e-5, 1e-5)))
    assert on_two["memory"]["tracker_peak_bytes"] == max(on_two["memory"]["tracker_peak_bytes_by_rank"])
    assert len(on_two["memory"]["process_peak_rss_bytes_by_rank"]) == 2


@pytest.mark.parametrize("pack", [False, True])
def test_a_local_text_corpus_on_two_ranks_takes_the_steps_of_one_process(pack, tmp_path):
    data = {"corpus": "local", "path": str(make_c4_dir(tmp_path / "c4")),
            "tokenizer": str(make_tokenizer_dir(tmp_path / "tokenizer")), "pack": pack}
    one = RunSpec(**TINY, method="full", data=data)
    # Losses to 1e-5 (measured: 1e-6); weights to 5e-5: Adam divides by the root of each second
    # moment, so entries whose gradients are near 0 turn the last bits of an all-reduced sum
    # into differences of up to 1.5e-5 (measured, packed, one entry of an MLP weight).
    assert_same_training(train_on_ranks(one, 1, tmp_path), train_on_ranks(replace(one, nproc=2), 2, tmp_path),
                         1e-5, 5e-5)


def test_ddp_all_reduces_once_per_step_whatever_the_accumulation(tmp_path):
    accumulated = RunSpec(**{**TINY, "batch_size": 2}, method="full", grad_accum=2)
    reference = train_on_ranks(accumulated, 1, tmp_path)
    on_two = train_on_ranks(replace(accumulated, nproc=2), 2, tmp_path)
    assert_same_training(reference, on_two, 1e-5, 1e-5)
    unaccumulated = train_on_ranks(replace(accumulated, nproc=2, grad_accum=1, batch_size=4), 2, tmp_path)
    assert on_two["all_reduces"] == unaccumulated["all_reduces"] >= TINY["steps"]


FSDP2_STATE_SHARE = {"apollo": 0.55, "apollo_mini": 0.55}
"""The share of the unsharded run's optimizer state one rank may hold under FSDP2 on 2 ranks,
where it is not half: APOLLO's projections and the low-rank moments of its left projections are
whole on every rank (methods/apollo.py)."""


@pytest.mark.parametrize("method, options", [("full", {}), ("adam8bit", {}), ("lora", {"dropout": 0.0}),
                                             ("dora", {"dropout": 0.0}), ("pissa", {"dropout": 0.0}),
                                             ("muon", {}), ("low_rank", {}), ("paged_adam8bit", {}),
                                             # Rank 4: at ranks 8 and 16 LAPACK gives some singular
                                             # vectors the other sign at the second refresh, from
                                             # gradients that differ in their last bits, and the
                                             # moments GaLore carries across refreshes turn that into
                                             # 5e-4 in the weights (losses within 3e-5).
                                             ("galore", {"rank": 4, "update_proj_gap": 2}),
                                             ("galore8bit", {"rank": 4, "update_proj_gap": 2}),
                                             ("apollo", {"rank": 4, "update_proj_gap": 2}),
                                             ("apollo_mini", {"update_proj_gap": 2})])
def test_fsdp2_matches_the_unsharded_run_and_holds_half_the_weights(method, options, tmp_path):
    one = RunSpec(**TINY, method=method, method_options=options)
    reference = train_on_ranks(one, 1, tmp_path)
    sharded = train_on_ranks(replace(one, nproc=2, sharding="fsdp2"), 2, tmp_path)
    assert_same_training(reference, sharded, *TOLERANCES.get(method, (1e-5, 1e-5)))
    # Each rank holds a shard: half the trainable weights, half their gradients (those alive at
    # the peak are this rank's shards, the whole ones being transient) and half the optimizer
    # state (or FSDP2_STATE_SHARE of it).
    half_the_weights = reference["memory"]["trainable_weight_bytes"] / 2 + 4096
    assert sharded["memory"]["trainable_weight_bytes"] <= half_the_weights
    assert sharded["memory"]["tracker_at_peak_bytes"]["gradients"] <= half_the_weights
    state_share = FSDP2_STATE_SHARE.get(method, 0.5)
    assert sharded["memory"]["optimizer_state_bytes"] <= reference["memory"]["optimizer_state_bytes"] * state_share + 4096


def _gathered_bytes(spec: RunSpec) -> tuple[int, list[int]]:
    """The parameter bytes FSDP2 gathers for the root's own parameters and for each block, the
    units training/parallel.py shards."""
    from methods import prepare_training
    from workloads import WORKLOADS

    workload = WORKLOADS[spec.workload]
    model = prepare_training(workload.build_model(spec), spec, workload).model
    block_names = next(m._no_split_modules for m in model.modules() if getattr(m, "_no_split_modules", None))
    blocks = [sum(p.nbytes for p in m.parameters()) for m in model.modules() if type(m).__name__ in block_names]
    return sum(p.nbytes for p in model.parameters()) - sum(blocks), blocks


@pytest.mark.parametrize("method, options", [("full", {}), ("lora", {"dropout": 0.0})])
def test_under_fsdp2_the_tracker_counts_gathered_weights_only_while_they_are_gathered(method, options, tmp_path):
    """FSDP2 frees gathered weights with UntypedStorage.resize_(0), which the tracker recounts
    (meters/tracker.py): at step end a rank holds no activations, and at its peak (the backward's
    start) its activations are at most one process's with the same rows plus what FSDP2 keeps
    gathered from the forward into the backward: the root's weights and one block's. Batches large
    enough, and two steps tracked, that both peaks are the backward's start of the second step."""
    one = RunSpec(**{**TINY, "batch_size": 8, "seq_len": 32, "timing_warmup_steps": 2}, method=method,
                  method_options=options)
    sharded = train_on_ranks(replace(one, nproc=2, sharding="fsdp2"), 2, tmp_path)["memory"]
    same_rows = train_on_ranks(replace(one, batch_size=one.batch_size // 2), 1, tmp_path)["memory"]
    assert sharded["tracker_at_step_end_bytes"]["activations"] == 0
    root_bytes, block_bytes = _gathered_bytes(one)
    assert same_rows["tracker_at_peak_bytes"]["activations"] > 0
    assert sharded["tracker_at_peak_bytes"]["activations"] <= (
        same_rows["tracker_at_peak_bytes"]["activations"] + root_bytes + max(block_bytes))


REFUSED = """
    [defaults]
    steps = 2
    timing_warmup_steps = 1
    device = "cpu"
    nproc = 2
    {line}
    [[workloads]]
    name = "llama"
    size = "tiny"
    [[methods]]
    name = "{method}"
    {method_line}
"""


@pytest.mark.parametrize("method, line, method_line, expected", [
    ("galore_layerwise", 'sharding = "fsdp2"', "", 'method galore_layerwise does not train under sharding = "fsdp2"'),
    ("full", "batch_size = 3", "", "batch_size = 3 must be a multiple of the world size nproc x nnodes = 2"),
    ("full", "nnodes = 2", "", "nnodes = 2 needs rdzv_endpoint"),
    ("full", "checkpoint_every = 1", "", "checkpoint_every = 1 with 2 ranks"),
    ("relora", "", "options = { warm_start_steps = 1 }", "options.warm_start_steps with nproc > 1"),
    ("lisa", "", "", "method lisa with nproc > 1: DistributedDataParallel fixes"),
    ("badam", "", "", "method badam with nproc > 1: DistributedDataParallel fixes"),
])
def test_what_cannot_run_on_several_ranks_is_refused_before_the_run_in_one_line(write_suite, method, line, method_line,
                                                                                 expected):
    from suites.load import load_suite
    from training.preflight import preflight

    path = write_suite(REFUSED.format(line=line, method=method, method_line=method_line))
    with pytest.raises(ValueError) as refused:  # the spec's own fields when the suite loads, the rest in preflight
        preflight(str(path), load_suite(path).runs)
    assert expected in str(refused.value) and "\n" not in str(refused.value)


def test_an_unknown_sharding_is_refused_naming_the_accepted_ones(write_suite):
    from suites.load import SuiteError, load_suite

    with pytest.raises(SuiteError, match="defaults.sharding = 'fsdp3' is not known; accepted: none, fsdp2"):
        load_suite(write_suite(REFUSED.format(line='sharding = "fsdp3"', method="full", method_line="")))


def test_run_ids_of_one_process_are_unchanged_and_others_name_their_world_size():
    one = RunSpec(**TINY, method="full")
    assert "nproc" not in one.to_json() and "-" not in one.run_id
    assert replace(one, nproc=2).run_id.endswith("-w2")
    assert replace(one, nproc=2).run_id.split("-")[0] != one.run_id
