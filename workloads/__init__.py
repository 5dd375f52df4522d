"""Registry of workloads: name -> Workload."""

from workloads.llama import LlamaPretraining

WORKLOADS = {
    "llama": LlamaPretraining(),
}
