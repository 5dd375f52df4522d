"""The training loop's own judgements: when a finished run counts as diverged."""

from results.schema import Metrics
from training.loop import divergence


def test_divergence_is_a_rise_or_a_collapse_back_to_uniform():
    assert divergence(Metrics(loss_curve=[7.6] * 5 + [9.6] * 5, uniform_loss=7.62)).startswith("mean loss of the last")
    assert "collapsed" in divergence(Metrics(loss_curve=[7.6] * 5 + [5.0] * 5 + [7.6] * 5, uniform_loss=7.62))
    assert divergence(Metrics(loss_curve=[7.6] * 5 + [6.0] * 5 + [6.5] * 5, uniform_loss=7.62)) is None
    # A noisy tiny run around the uniform level has not diverged, even where one step dips:
    # apollo_mini on the tiny RoBERTa in ci_memory, which a single-step rule called collapsed.
    noisy = [1.105, 1.104, 1.092, 1.1, 1.042, 1.274, 1.247, 1.033, 1.161, 1.088, 1.13, 1.163, 1.133, 1.024, 1.158,
             1.046, 1.188, 0.985, 1.269, 1.207]
    assert divergence(Metrics(loss_curve=noisy, uniform_loss=1.0986)) is None
