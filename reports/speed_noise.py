"""Which speed figures are noise: a run whose step times spread far was sharing its machine or
stalling, so its tokens/s, and any change computed from it, says more about the machine than
about the method."""

NOISY_P90_OVER_P50 = 1.5
"""A run's tokens/s is unreliable when its p90 step time exceeds this many times its p50. Every
timed step of a run does the same work, so on a quiet machine p90 stays close to p50; a busy one
stretches the slow tail (p50 700 ms, p90 1248 ms, 1.78x, stood behind a +2865% tokens/s figure).
A method whose own periodic steps are slow (an SVD in more than a tenth of the steps) is marked
too: the mark says the times spread, not why."""
UNRELIABLE_MARK = "(noisy)"
"""What follows a speed figure NOISY_P90_OVER_P50 says is unreliable, in report.md and index.html."""
UNRELIABLE_NOTE = (
    f"A tokens/s or MFU figure marked `{UNRELIABLE_MARK}` comes from runs whose step times spread too far to "
    f"trust it: some run of the row had its p90 step time above {NOISY_P90_OVER_P50:g} × its p50. A Δ tokens/s "
    "is marked where its row or the baseline row is (summary.csv: `tokens_per_s_unreliable`, "
    "`tokens_per_s_delta_unreliable`). A load average (Environment) near or above the CPU count makes speed "
    "figures unreliable even where unmarked: the runs may have shared their CPUs (the 1-minute average still "
    "counts a suite's previous run for about a minute)."
)


def noisy_step_times(p50_s: float | None, p90_s: float | None) -> bool:
    """Whether a run's step times spread beyond NOISY_P90_OVER_P50 (False where it has none)."""
    return p50_s is not None and p90_s is not None and p90_s > NOISY_P90_OVER_P50 * p50_s


def marked(text: str | None, unreliable: bool) -> str | None:
    """A formatted speed figure with UNRELIABLE_MARK after it where unreliable."""
    return f"{text} {UNRELIABLE_MARK}" if text is not None and unreliable else text
