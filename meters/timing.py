"""Step time and throughput, with warm-up steps left out."""

import statistics
import time

import torch

from results.schema import Throughput


class StepClock:
    """Times optimizer steps; the first `warmup_steps` are excluded from every figure."""

    def __init__(self, device: torch.device, warmup_steps: int):
        self.device = device
        self.warmup_steps = warmup_steps
        self.step_seconds: list[float] = []
        self.step_tokens: list[int] = []
        self._started = 0.0

    def _sync(self):
        # CUDA kernels run asynchronously: read the clock only once they have finished.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self):
        self._sync()
        self._started = time.perf_counter()

    def stop(self, tokens: int):
        self._sync()
        self.step_seconds.append(time.perf_counter() - self._started)
        self.step_tokens.append(tokens)

    def summary(self) -> Throughput:
        timed = self.step_seconds[self.warmup_steps :]
        tokens = self.step_tokens[self.warmup_steps :]
        if not timed:
            return Throughput(timed_steps=0)
        percentiles = statistics.quantiles(timed, n=10, method="inclusive") if len(timed) > 1 else [timed[0]] * 9
        return Throughput(
            timed_steps=len(timed),
            tokens_per_s=sum(tokens) / sum(timed),
            step_time_mean_s=statistics.fmean(timed),
            step_time_p50_s=statistics.median(timed),
            step_time_p90_s=percentiles[8],
        )
