"""Shared fixtures: tiny specs and suite files that run in seconds on CPU."""

import textwrap

import pytest
import torch

from core.spec import RunSpec


def tiny_spec(**overrides) -> RunSpec:
    """A tiny LLaMA run on the Markov corpus, CPU, float32."""
    values = dict(workload="llama", size="tiny", method="full", steps=4, batch_size=4, seq_len=32,
                  eval_batches=1, timing_warmup_steps=1, device="cpu")
    return RunSpec(**{**values, **overrides})


@pytest.fixture
def write_suite(tmp_path):
    """Write a suite file from TOML text and return its path."""

    def write(text: str, name: str = "suite.toml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread than fighting other processes for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_locally(suite, results_path, **settings):
    """The suite's runs through the local launcher and the suite runner, as `harness.py run`
    starts them; `settings` are RunSettings fields (train_function, progress, timeout_s, ...)."""
    from launchers import LAUNCHERS
    from launchers.base import RunSettings
    from launchers.suite_runner import run_suite

    settings = RunSettings(**settings)
    local = LAUNCHERS["local"]
    return run_suite(local.start(local.options(), results_path, settings), suite, results_path, settings)


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu are skipped, saying why, on a machine without CUDA."""
    if torch.cuda.is_available():
        return
    no_cuda = pytest.mark.skip(reason="needs a CUDA device; this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(no_cuda)
