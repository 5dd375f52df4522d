"""Registry of workloads: name -> Workload."""

from workloads.llama import LlamaPretraining
from workloads.roberta_glue import RobertaGlue

WORKLOADS = {
    "llama": LlamaPretraining(),
    "roberta_glue": RobertaGlue(),
}
