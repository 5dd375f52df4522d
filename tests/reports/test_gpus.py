"""MFU on CUDA: 6 x parameters x tokens/s over the GPU's BF16 peak; a dash for an unknown GPU or a CPU."""

from dataclasses import replace

from reports.gpus import mfu, peak_bf16_flops
from reports.render import render_report
from results.records import append_record
from results.schema import Environment
from tests.record_fixtures import make_record, markdown_rows


def test_known_gpus_have_a_peak_and_unknown_ones_none():
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_bf16_flops("NVIDIA A100-SXM4-40GB") == 312e12
    assert peak_bf16_flops("NVIDIA GeForce RTX 4090") == 165e12
    assert peak_bf16_flops("Some Future GPU") is None
    assert mfu(1000.0, 10**6, "Some Future GPU") is None


def test_mfu_column_on_cuda_runs_only(tmp_path):
    results = tmp_path / "demo.jsonl"
    # make_record: 1 MiB of float32 trainable weights = 262144 parameters.
    cuda = Environment(device_type="cuda", device_name="NVIDIA A100-SXM4-80GB")
    fast = make_record("a", "full")
    append_record(results, replace(fast, environment=cuda, metrics=replace(fast.metrics, tokens_per_s=1e8)))
    append_record(results, replace(make_record("b", "full", workload="other"), environment=Environment(device_type="cpu")))
    rows = markdown_rows(render_report(results, tmp_path / "out").read_text(), "workload", "MFU (%)")
    assert [row["MFU (%)"] for row in rows] == ["50.4", "–"]  # 6 x 262144 x 1e8 / 312e12
