import pytest
import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from core.spec import RunSpec
from methods.base import warmup_cosine_schedule


@pytest.mark.parametrize("steps, warmup_fraction", [(40, 0.1), (20, 0.0), (7, 0.5), (1000, 0.01), (3, 1.0)])
def test_the_schedule_is_transformers_cosine_with_min_lr_to_the_bit(steps, warmup_fraction):
    spec = RunSpec(workload="llama", size="tiny", method="full", steps=steps, warmup_fraction=warmup_fraction)

    def lrs(make_schedule):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)
        schedule = make_schedule(optimizer)
        seen = []
        for _ in range(steps + 2):  # two past the end: the floor holds there too
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return seen

    ours = lrs(lambda optimizer: warmup_cosine_schedule(optimizer, spec))
    theirs = lrs(lambda optimizer: get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=int(warmup_fraction * steps), num_training_steps=steps, min_lr_rate=0.1))
    assert ours == theirs
