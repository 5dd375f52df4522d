"""Registry of workloads: name -> Workload."""

from workloads.llama import LlamaPretraining
from workloads.roberta_glue import RobertaGlue

WORKLOADS = {workload.name: workload for workload in (LlamaPretraining(), RobertaGlue())}
