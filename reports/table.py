"""The comparison table: one row per workload, size and method label, averaged over seeds."""

import pandas as pd

from results.records import latest_by_run

MIB = 2**20


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run (its latest record), with the figures reports use, bytes as bytes."""
    rows = []
    for record in latest_by_run(records):
        spec, metrics, memory = record["spec"], record.get("metrics", {}), record.get("memory", {})
        rows.append(
            {
                "workload": workload_name(spec),
                "method": record["label"],
                "seed": spec["seed"],
                "status": record["status"],
                "error": record.get("error"),
                "final_loss": metrics.get("final_loss"),
                "eval_loss": metrics.get("eval_loss"),
                "loss_above_floor": metrics.get("final_loss_above_floor"),
                "perplexity": metrics.get("perplexity"),
                "task_score": metrics.get("score"),
                "tokens_per_s": metrics.get("tokens_per_s"),
                "step_time_p50_s": metrics.get("step_time_p50_s"),
                "weights_and_state_bytes": _sum_present(
                    memory, ("trainable_weight_bytes", "frozen_weight_bytes", "optimizer_state_bytes")
                ),
                "optimizer_state_bytes": memory.get("optimizer_state_bytes"),
                "tracker_peak_bytes": memory.get("tracker_peak_bytes"),
                "cuda_max_allocated_bytes": memory.get("cuda_max_allocated_bytes"),
                "process_peak_rss_bytes": memory.get("process_peak_rss_bytes"),
            }
        )
    return pd.DataFrame(rows)


def workload_name(spec: dict) -> str:
    """Workload and size, plus the task where one workload runs several (GLUE)."""
    task = spec.get("data", {}).get("task")
    return f"{spec['workload']}-{spec['size']}" + (f" {task}" if task else "")


def _sum_present(values: dict, keys: tuple[str, ...]) -> int | None:
    present = [values[k] for k in keys if values.get(k) is not None]
    return sum(present) if present else None


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean over the successful seeds of each (workload, method); counts say how many ran ok."""
    ok = runs[runs.status == "ok"]
    grouped = ok.groupby(["workload", "method"], sort=False)
    table = pd.DataFrame(
        {
            "runs ok": runs.groupby(["workload", "method"], sort=False).status.apply(
                lambda s: f"{(s == 'ok').sum()}/{len(s)}"
            ),
            "final loss": grouped.final_loss.mean(),
            "eval loss": grouped.eval_loss.mean(),
            "loss above floor": grouped.loss_above_floor.mean(),
            "perplexity": grouped.perplexity.mean(),
            "task score": grouped.task_score.mean(),
            "tokens/s": grouped.tokens_per_s.mean(),
            "step p50 (ms)": grouped.step_time_p50_s.mean() * 1000,
            "weights + optimizer state (MiB)": grouped.weights_and_state_bytes.mean() / MIB,
            "optimizer state (MiB)": grouped.optimizer_state_bytes.mean() / MIB,
            "tracked peak (MiB)": grouped.tracker_peak_bytes.mean() / MIB,
            "CUDA max allocated (MiB)": grouped.cuda_max_allocated_bytes.mean() / MIB,
            "process peak RSS (MiB)": grouped.process_peak_rss_bytes.mean() / MIB,
        }
    )
    return table.dropna(axis=1, how="all").reset_index()
