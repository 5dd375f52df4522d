"""The README's methods table says what the registry and preflight do: every method once, its
packages' licenses, and whether it trains under DDP and FSDP2."""

from pathlib import Path

import pytest

from core.spec import RunSpec
from methods import METHODS
from methods.licenses import method_licenses
from tests.record_fixtures import markdown_rows
from training.preflight import check_run

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
ROWS = {row["method"].strip("`"): row for row in markdown_rows(README, "method", "package: license")}


def test_the_table_lists_every_registered_method_with_its_licenses():
    assert list(ROWS) == list(METHODS)
    assert {name: row["package: license"] for name, row in ROWS.items()} == {
        name: method_licenses(method.packages) for name, method in METHODS.items()}
    assert {name: row["FSDP2"] for name, row in ROWS.items()} == {
        name: "yes" if method.fsdp2 else "no" for name, method in METHODS.items()}


@pytest.mark.parametrize("method", list(METHODS))
def test_the_ddp_column_is_what_preflight_does_with_two_ranks(method):
    spec = RunSpec(workload="llama", size="tiny", method=method, nproc=2, batch_size=4, seq_len=32, steps=4,
                   timing_warmup_steps=1, device="cpu")
    if ROWS[method]["DDP"] == "yes":
        check_run(spec)
    else:
        with pytest.raises(ValueError, match=f"method {method} .*(nproc > 1|one process only)"):
            check_run(spec)
