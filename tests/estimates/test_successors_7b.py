"""--successors-7b names only registered methods, and each claim says what its figure measures."""

import pytest

from estimates.paper_numbers import SUCCESSOR_CLAIMS
from estimates.successors_7b import REFERENCES, SUCCESSORS, _ours
from meters.tracker import StepMemory
from methods import METHODS


def test_every_successor_and_claim_is_a_registered_method():
    assert set(SUCCESSORS) | set(REFERENCES) <= set(METHODS)
    assert set(SUCCESSOR_CLAIMS) <= set(SUCCESSORS)


@pytest.mark.parametrize("method", list(SUCCESSOR_CLAIMS))
def test_each_claim_measures_a_figure_the_report_computes(method):
    _, kind, figure = SUCCESSOR_CLAIMS[method]
    at_peak = {"trainable_weights": 4, "frozen_weights": 1, "gradients": 2, "optimizer_state": 3, "activations": 10,
               "other": 0}
    peak = StepMemory(peak_bytes=10**9, at_peak_bytes=at_peak, at_step_end_bytes=at_peak)
    ours = _ours(kind, peak, {"full": peak, "galore": peak})
    assert ours > 0 and (figure is None or figure > 0)
    if kind == "weights_grads_state_gb":
        assert ours == 10 / 10**9  # weights, gradients and state; not the activations
