"""The README's tables say what the registry and preflight do: the methods table every method
once with its packages' licenses, the table of "Several processes" whether it trains under DDP
and FSDP2, and why not where it does not."""

from dataclasses import replace
from pathlib import Path

import pytest

from core.spec import RunSpec
from methods import METHODS, REGISTERED
from methods.licenses import method_licenses
from tests.record_fixtures import markdown_rows
from training.preflight import check_run

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
ROWS = {row["method"].strip("`"): row for row in markdown_rows(README, "method", "package: license")}
RANKS_ROWS = {row["method"].strip("`"): row for row in markdown_rows(README, "method", "FSDP2")}


def test_the_table_lists_every_registered_method_with_its_licenses():
    assert list(ROWS) == list(METHODS)
    assert {name: row["package: license"] for name, row in ROWS.items()} == {
        name: method_licenses(registered.packages) for name, registered in REGISTERED.items()}
    assert list(RANKS_ROWS) == list(METHODS)


@pytest.mark.parametrize("method", list(METHODS))
def test_the_ddp_and_fsdp2_columns_are_what_preflight_does_with_two_ranks(method):
    spec = RunSpec(workload="llama", size="tiny", method=method, nproc=2, batch_size=4, seq_len=32, steps=4,
                   timing_warmup_steps=1, device="cpu")
    row = RANKS_ROWS[method]
    for sharding, column in (("none", "DDP"), ("fsdp2", "FSDP2")):
        if row[column] == "yes":
            check_run(replace(spec, sharding=sharding))
        else:
            with pytest.raises(ValueError, match=f"method {method} .*(nproc > 1|one process only|fsdp2)"):
                check_run(replace(spec, sharding=sharding))
    # A refusal under FSDP2 says what it lacks; a method that trains under it has nothing to say.
    assert bool(row["what an FSDP2 refusal still lacks"]) == (row["FSDP2"] != "yes")
