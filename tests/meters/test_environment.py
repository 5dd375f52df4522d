"""The environment record names the host's CPUs and its load as the run starts."""

import os

import torch

from meters import environment as environment_module
from meters.environment import environment


def test_the_cpu_count_and_the_load_are_recorded():
    env = environment(torch.device("cpu"), ("torch",))
    assert env.cpu_count == os.cpu_count()
    assert env.load_average_1m is not None and env.load_average_1m >= 0


def test_a_host_that_refuses_its_load_records_none(monkeypatch):
    def refuse():
        raise OSError("load average unobtainable")

    monkeypatch.setattr(environment_module.os, "getloadavg", refuse)
    assert environment(torch.device("cpu"), ("torch",)).load_average_1m is None
