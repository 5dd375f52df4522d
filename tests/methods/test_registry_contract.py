"""The contract every registered method keeps on every registered workload: a few steps
through train() give a complete record, a finite loss, and the same tracker bytes every time.
A new method or workload is covered here without a line of test code."""

import json
import math

import pytest
import torch

from core.spec import resolve_device
from launchers.packages import recorded_packages
from meters.environment import environment
from methods import METHODS
from results.schema import Record
from tests.conftest import tiny_spec
from training.loop import train
from training.setting import run_setting
from workloads import WORKLOADS

DATA = {"llama": {}, "roberta_glue": {"task": "synthetic-classification"}}
"""Each workload's offline data: the contract must not need the network."""
MODELS = [("llama", "tiny"), ("llama", "tiny-qwen2"), ("llama", "tiny-gemma2"), ("roberta_glue", "tiny")]
"""(workload, size): every workload's tiny size, and a tiny config of each architecture family
beyond LLaMA's (Qwen2: grouped-query attention, biased q/k/v, tied head; Gemma 2: head_dim apart
from hidden / heads, four norms a layer, soft-capped logits, tied head)."""
OPTIONS = {
    "relora": {"rank": 4, "reset_interval": 2, "restart_warmup_steps": 1},
    **{name: {"update_proj_gap": 2} for name in METHODS if name.startswith(("galore", "apollo", "fira"))},
}
"""Options that make a few steps exercise a method's periodic work (ReLoRA's merge, GaLore's refresh)."""
FILLED_ON_CPU = {
    "metrics": {"loss_curve", "final_loss", "timed_steps", "tokens_per_s", "step_time_mean_s", "step_time_p50_s",
                "step_time_p90_s", "eval_loss"},
    "memory": {"tracker_peak_bytes", "tracker_peak_step", "tracker_at_peak_bytes", "tracker_at_step_end_bytes",
               "trainable_weight_bytes", "frozen_weight_bytes", "optimizer_state_bytes", "process_peak_rss_bytes"},
}
FILLED_BY_WORKLOAD = {
    "llama": {"perplexity", "eval_tokens", "loss_floor", "final_loss_above_floor"},
    "roberta_glue": {"task_score", "task_metrics"},
}
DETERMINISTIC_MEMORY = ("tracker_peak_bytes", "tracker_at_peak_bytes", "tracker_at_step_end_bytes",
                        "trainable_weight_bytes", "frozen_weight_bytes", "optimizer_state_bytes")


def contract_spec(method: str, workload: str, size: str = "tiny"):
    # A CUDA-only method runs on CUDA: on the CPU its package cannot build at all.
    device = "cuda" if METHODS[method].cuda_only else "cpu"
    return tiny_spec(workload=workload, size=size, method=method, method_options=OPTIONS.get(method, {}), data=DATA[workload],
                     steps=4, timing_warmup_steps=2, batch_size=4, seq_len=32, lr=1e-3, device=device)


def test_every_workload_has_offline_contract_data_and_a_model():
    assert set(DATA) == set(WORKLOADS) == {workload for workload, _ in MODELS}


@pytest.mark.parametrize("workload, size", MODELS)
@pytest.mark.parametrize("method", list(METHODS))
def test_method_trains_the_workload_into_a_complete_record(method, workload, size, one_thread):
    if METHODS[method].cuda_only and not torch.cuda.is_available():
        pytest.skip(f"method {method} trains on CUDA devices only and this machine has none; its traced estimate "
                    "is in the memory gate (results/baselines/ci_traced_7b.json)")
    spec = contract_spec(method, workload, size)
    metrics, memory = train(spec, progress=False)
    record = Record(run_id=spec.run_id, suite="contract", label=method, spec=spec, status="ok", metrics=metrics,
                    memory=memory, environment=environment(resolve_device(spec.device), recorded_packages()),
                    setting=run_setting(spec))

    assert Record.from_json(json.loads(json.dumps(record.to_json()))) == record
    filled = {"metrics": FILLED_ON_CPU["metrics"] | FILLED_BY_WORKLOAD[workload], "memory": FILLED_ON_CPU["memory"]}
    for part, names in filled.items():
        empty = sorted(name for name in names if getattr(record, part).__dict__[name] in (None, [], {}))
        assert not empty, f"{method} on {workload}: record.{part} leaves {empty} empty"
    assert len(metrics.loss_curve) == spec.steps and all(math.isfinite(loss) for loss in metrics.loss_curve)
    assert memory.tracker_peak_bytes >= sum(memory.tracker_at_step_end_bytes.values()) > 0

    _, again = train(spec, progress=False)
    assert {name: getattr(again, name) for name in DETERMINISTIC_MEMORY} == {
        name: getattr(memory, name) for name in DETERMINISTIC_MEMORY
    }


def test_each_registered_name_is_its_methods_name():
    assert [METHODS[name].name for name in METHODS] == list(METHODS)


@pytest.mark.slow  # a fresh interpreter
def test_looking_up_a_method_imports_no_heavy_package_it_does_not_declare():
    """The registry imports a method's module when it is looked up: one that declares no package
    beyond torch and transformers must not pull in bitsandbytes, peft or datasets (each takes a
    second or more to import). Some packages import them themselves (apollo-torch imports
    bitsandbytes, badam peft): such methods are not asked."""
    import subprocess
    import sys

    from methods import REGISTERED

    heavy = ("bitsandbytes", "peft", "datasets")
    light = [name for name, registered in REGISTERED.items() if not registered.packages]
    program = (f"import sys; from methods import METHODS; from workloads import WORKLOADS; "
               f"[METHODS[name] for name in {light!r}]; print([m for m in {heavy!r} if m in sys.modules])")
    shown = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, check=True)
    assert len(light) >= 7 and shown.stdout.strip() == "[]"


def test_every_module_a_method_imports_on_first_use_is_found_by_its_name():
    """modules_of names what a fork server and a trace's parent import before they fork: a
    distribution whose import name is not its pip name with "-" as "_" would fail there."""
    import importlib.util

    from methods import REGISTERED, modules_of

    for name in REGISTERED:
        modules = modules_of([name])
        assert modules[0] == REGISTERED[name].module
        assert len(modules) == 1 + len(REGISTERED[name].packages)
        missing = [module for module in modules if importlib.util.find_spec(module) is None]
        assert not missing, f"{name}: {missing} not importable"
