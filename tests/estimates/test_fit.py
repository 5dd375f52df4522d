"""Will it fit: budgets, the batch search against brute force, the fit command."""

import functools

import pytest

import harness
from estimates.fit import CUDA_CONTEXT_BYTES, FRAGMENTATION_FRACTION, Budget, fit_batch, largest_batch, parse_budget
from estimates.traced import traced_steps
from tests.conftest import tiny_spec


@pytest.mark.parametrize(
    "text, expected_bytes, shown",
    [("24GB", 24 * 10**9, "24 GB"), ("22.5GiB", int(22.5 * 2**30), "22.5 GiB"), ("80 gb", 80 * 10**9, "80 GB"),
     ("800MiB", 800 * 2**20, "800 MiB")],
)
def test_budgets_parse_in_decimal_and_binary_units(text, expected_bytes, shown):
    budget = parse_budget(text)
    assert (budget.bytes, budget.text) == (expected_bytes, shown)
    assert ("decimal" if "GB" in shown or " MB" in shown else "binary") in budget.describe()


@pytest.mark.parametrize("text", ["24", "GB", "24TB", "-3GB", "0GB", "24 G B", "1e3GB"])
def test_bad_budgets_give_one_line_and_exit_2(text, capsys):
    assert harness.main(["estimate", f"--fit={text}", "--size", "tiny"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and text in error and "24GB" in error


@pytest.mark.parametrize(
    "peak_at",
    [
        lambda batch: 1000 + 37 * batch,  # linear
        lambda batch: max(5000, 1000 + 37 * batch),  # flat until the activations outgrow the optimizer step
        lambda batch: 1000 + 30 * batch + batch * batch // 4,  # a little convex
        lambda batch: 1000 + 37 * batch + (batch % 3) * 20,  # rounding noise
    ],
)
@pytest.mark.parametrize("limit_bytes", [900, 1037, 1100, 6000, 20000])
def test_the_search_finds_what_brute_force_finds_and_confirms_it(peak_at, limit_bytes):
    asked = []

    def traced(batch):
        asked.append(batch)
        return peak_at(batch)

    brute_force = max((batch for batch in range(1, 2000) if peak_at(batch) <= limit_bytes), default=0)
    assert largest_batch(traced, limit_bytes) == brute_force
    if brute_force:
        assert brute_force in asked and brute_force + 1 in asked
    assert len(asked) == len(set(asked)) <= 12


@pytest.mark.parametrize("limit_bytes", [6000, 20000])
def test_a_line_through_what_grows_needs_no_more_traces_than_two_and_the_confirmation(limit_bytes):
    # The optimizer step sets the peak (5000) at small batches; the forward and backward's
    # peak, 1000 + 37 b, is what crosses the limit.
    asked = []

    def traced(batch):
        asked.append(batch)
        return max(5000, 1000 + 37 * batch)

    brute_force = max(batch for batch in range(1, 2000) if max(5000, 1000 + 37 * batch) <= limit_bytes)
    assert largest_batch(traced, limit_bytes, growth_bytes_at=lambda batch: 1000 + 37 * batch) == brute_force
    assert asked == [1, 2, brute_force, brute_force + 1]


@pytest.mark.slow
def test_fit_of_a_tiny_model_equals_brute_force_over_traced_batches():
    spec = tiny_spec(method="full", seq_len=32, dtype="float32")

    @functools.cache
    def peak_bytes(batch):  # the first two steps of a fresh trace at that batch
        steps, _ = traced_steps(tiny_spec(method="full", seq_len=32, dtype="float32", batch_size=batch), steps=2)
        return max(step.peak_bytes for step in steps)

    limit_bytes = (peak_bytes(5) + peak_bytes(6)) // 2
    budget = Budget(int(limit_bytes * (1 + FRAGMENTATION_FRACTION)) + CUDA_CONTEXT_BYTES + 1, "test")
    brute_force = max(batch for batch in range(1, 9) if peak_bytes(batch) <= budget.peak_limit_bytes)
    fit, = fit_batch(spec, [budget])
    assert brute_force == fit.batch_size == 5
    assert fit.peak_bytes == peak_bytes(5)
    assert fit.spec.batch_size == 5 and fit.memory.tracker_peak_bytes == fit.peak_bytes


@pytest.mark.slow
def test_fit_command_prints_a_row_per_method_and_writes_records(tmp_path, capsys):
    records = tmp_path / "fit.jsonl"
    argv = ["estimate", "--fit", "1.1GiB", "--fit", "2GB", "--size", "tiny", "--seq", "32", "--method", "full", "--method", "lora",
            "--checkpointing", "both", "--jobs", "1", "--records", str(records)]
    assert harness.main(argv) == 0
    out = capsys.readouterr().out
    assert "budget 1.1 GiB" in out and "budget 2 GB" in out and "binary" in out and "1.0 GiB CUDA context" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("full ", "lora "))]
    assert [(row[0], row[1]) for row in rows] == [("full", "no"), ("lora", "no"), ("full", "yes"), ("lora", "yes")] * 2
    assert all(0 < int(row[2]) < int(larger[2]) for row, larger in zip(rows[:4], rows[4:]))
    from results.records import read_records

    written = read_records(records)
    assert len(written) == 8 and all(record.kind == "traced_estimate" for record in written)
    assert [record.spec.batch_size for record in written] == [int(row[2]) for row in rows]
    assert all("largest batch" in record.notes[-1] for record in written)
    assert len({record.label for record in written}) == 8 and "full ckpt in 2 GB" in {r.label for r in written}


@pytest.mark.slow
def test_fit_full_trace_says_neither_how_structure_traced_nor_what_fell_back(capsys):
    argv = ["estimate", "--fit", "2GB", "--size", "tiny", "--seq", "32", "--method", "full", "--jobs", "1",
            "--full-trace"]
    assert harness.main(argv) == 0
    out = capsys.readouterr().out
    assert "traced by structure" not in out and "traced in full" not in out and "traced in" in out
    assert harness.main(argv[:-1]) == 0  # tiny has 2 blocks: too few to trace by structure
    assert "1 traced in full:\n  full: traced at 2 blocks: NotByStructure: the model has 2 blocks" in capsys.readouterr().out
