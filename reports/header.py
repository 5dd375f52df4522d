"""The top of a report: where the results came from (environment, suite) and the commands that
produce them, rebuilt from the records (a record names its suite, not the command line)."""

import pandas as pd

from core.statuses import RecordKind
from results.schema import Record

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes")
LOAD = "load average (1 min), min–max"
"""The environment table's row of the host's load as the runs started: a range over the runs, not
a grouping key, so runs on one machine under varying load stay one environment."""


def _environment_row(record: Record) -> dict:
    env = record.environment
    commit = (env.git_commit or "–")[:10] + (" (dirty: uncommitted changes)" if env.git_dirty else "")
    row = {"device": f"{env.device_name or '?'} ({env.device_type or '?'})"}
    row.update({name: env.packages.get(name) or "–" for name in PACKAGES})
    row.update({"python": env.python, "CUDA / driver": f"{env.cuda or '–'} / {env.driver or '–'}",
                "git commit": commit, "host": env.host, "CPUs": env.cpu_count or "–", LOAD: env.load_average_1m})
    return row


def _load_range(loads: pd.Series) -> str:
    low, high = loads.min(), loads.max()
    if pd.isna(low):
        return "–"
    return f"{low:.2f}" if low == high else f"{low:.2f}–{high:.2f}"


def environment_table(records: list[Record]) -> pd.DataFrame:
    """One row per distinct environment of the measured runs (normally one), with its run count and
    the range of the host's load over those runs."""
    rows = [_environment_row(record) for record in records if record.kind == RecordKind.RUN]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    loads = pd.to_numeric(frame.pop(LOAD), errors="coerce")  # None (records before the field) -> NaN
    frame = frame.fillna("–")
    groups = loads.groupby([frame[name] for name in frame.columns], sort=False)
    counted = groups.agg(_load_range).rename(LOAD).to_frame().assign(runs=groups.size()).reset_index()
    return counted.T.reset_index().set_axis(["", *[f"environment {i + 1}" for i in range(len(counted))]], axis=1)


def commands(records: list[Record]) -> list[str]:
    """Commands that produce these records: `run` per suite; `estimate` per size and setting."""
    lines = [f"python harness.py run suites/{suite}.toml"
             for suite in dict.fromkeys(r.suite for r in records if r.kind == RecordKind.RUN)]
    estimates: dict[tuple, list[str]] = {}
    for record in records:
        if record.kind == RecordKind.TRACED_ESTIMATE:
            spec = record.spec
            options = " ".join(f"--option {key}={value}" for key, value in sorted(spec.method_options.items()))
            setting = (spec.workload, spec.size, spec.seq_len, spec.batch_size, spec.dtype, options, record.suite)
            estimates.setdefault(setting, []).append(spec.method)
    for (workload, size, seq_len, batch, dtype, options, suite), methods in estimates.items():
        method_args = " ".join(f"--method {method}" for method in dict.fromkeys(methods))
        lines.append(f"python harness.py estimate --workload {workload} --size {size} --seq {seq_len} --batch {batch} "
                     f"--dtype {dtype} {method_args} {options} --suite {suite}".replace("  ", " "))
    return lines
