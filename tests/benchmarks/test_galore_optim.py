"""make bench-optim at a tiny size: it measures every contender and leaves torch as it found it."""

import re

import torch

from benchmarks import galore_optim


def test_optimizer_benchmark_prints_ratios_and_restores_cuda_synchronize(capsys, one_thread):
    synchronize = torch.cuda.synchronize
    galore_optim.main(["--size", "tiny", "--gap", "2", "--refreshes", "1", "--device", "cpu"])
    assert torch.cuda.synchronize is synchronize
    out = capsys.readouterr().out
    ratios = re.findall(r"^  (ours .+?) / (.+?): step time (\d+\.\d+)", out, flags=re.MULTILINE)
    assert [(ours, reference) for ours, reference, _ in ratios] == [
        ("ours galore", "galore-torch GaLoreAdamW"),
        ("ours galore8bit", galore_optim.STUBBED),
    ]
    assert all(float(ratio) > 0 for *_, ratio in ratios)
