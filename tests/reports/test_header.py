"""The environment table: one column per distinct environment, the host's load a range over its
runs rather than a reason to split it."""

from reports.header import LOAD, environment_table
from results.schema import Environment
from tests.record_fixtures import make_record


def on_host(run_id: str, cpu_count: int | None, load: float | None, commit: str = "abc"):
    record = make_record(run_id, "full", seed=int(run_id[1:]))
    record.environment = Environment(host="vm", git_commit=commit, cpu_count=cpu_count, load_average_1m=load)
    return record


def rows(table) -> dict:
    """The table's rows by their name, each a list over the environments."""
    return table.set_index("").T.to_dict("list")


def test_runs_under_varying_load_stay_one_environment_with_the_load_range():
    table = rows(environment_table([on_host("r0", 2, 0.5), on_host("r1", 2, 3.25), on_host("r2", 2, 1.0)]))
    assert table["CPUs"] == [2] and table[LOAD] == ["0.50–3.25"] and table["runs"] == [3]


def test_each_environment_has_its_own_load_and_records_without_it_show_a_dash():
    table = rows(environment_table([on_host("r0", 2, 1.5), on_host("r1", 2, 1.5), on_host("r2", None, None, "def")]))
    assert table["git commit"] == ["abc", "def"]
    assert table["CPUs"] == [2, "–"] and table[LOAD] == ["1.50", "–"] and table["runs"] == [2, 1]
