"""The training loop's own judgements: when a finished run counts as diverged."""

import math

import pytest

from results.schema import Metrics
from tests.conftest import tiny_spec
from training.loop import divergence, train


def test_divergence_is_a_rise_or_a_collapse_back_to_uniform():
    assert divergence(Metrics(loss_curve=[7.6] * 5 + [9.6] * 5, uniform_loss=7.62)).startswith("mean loss of the last")
    assert "collapsed" in divergence(Metrics(loss_curve=[7.6] * 5 + [5.0] * 5 + [7.6] * 5, uniform_loss=7.62))
    assert divergence(Metrics(loss_curve=[7.6] * 5 + [6.0] * 5 + [6.5] * 5, uniform_loss=7.62)) is None
    # A noisy tiny run around the uniform level has not diverged, even where one step dips:
    # apollo_mini on the tiny RoBERTa in ci_memory, which a single-step rule called collapsed.
    noisy = [1.105, 1.104, 1.092, 1.1, 1.042, 1.274, 1.247, 1.033, 1.161, 1.088, 1.13, 1.163, 1.133, 1.024, 1.158,
             1.046, 1.188, 0.985, 1.269, 1.207]
    assert divergence(Metrics(loss_curve=noisy, uniform_loss=1.0986)) is None


def test_a_loss_flat_at_the_uniform_level_is_a_dead_model():
    dead = [7.6246] * 3 + [7.624618] * 10  # ln 2048 on every step: the same prediction for every input
    assert divergence(Metrics(loss_curve=dead, uniform_loss=7.6246189861593985)).startswith(
        "the loss sat at the uniform-prediction level 7.6246 on each of the last 5 steps")
    after_a_collapse = [7.6] * 5 + [5.0] * 5 + [7.6246189] * 6
    assert "sat at the uniform-prediction level" in divergence(Metrics(loss_curve=after_a_collapse,
                                                                       uniform_loss=7.6246189861593985))
    # Not yet learnt, but moving with its batches: not dead.
    assert divergence(Metrics(loss_curve=[7.62, 7.63, 7.61, 7.625, 7.618, 7.629], uniform_loss=7.6246)) is None


def test_an_evaluation_whose_perplexity_overflows_is_a_diverged_run_with_its_figures():
    assert divergence(Metrics(loss_curve=[7.6] * 6, eval_loss=729.03, perplexity=math.inf)) == (
        "the held-out loss is 729.03: its perplexity overflows")
    assert "overflows" in divergence(Metrics(loss_curve=[7.6] * 6, eval_loss=math.nan, perplexity=math.nan))


@pytest.mark.slow
@pytest.mark.parametrize("lr, says", [(1e6, "sat at the uniform-prediction level"), (10.0, "its perplexity overflows")])
def test_a_tiny_llama_trained_to_death_is_found_diverged(lr, says, one_thread):
    """Measured here: lr 1e6 leaves the loss at ln 2048 = 7.624618 on every step; lr 10 ends at a
    held-out loss of 729 nats, whose exp overflows a float."""
    metrics, _ = train(tiny_spec(steps=12, batch_size=8, seq_len=64, lr=lr), progress=False)
    assert says in divergence(metrics) and metrics.loss_curve and metrics.eval_loss is not None
