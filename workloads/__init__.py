"""Registry of workloads: name -> Workload; and what a size's model holds."""

import torch

from core.spec import RunSpec
from workloads.llama import LlamaPretraining
from workloads.roberta_glue import RobertaGlue

WORKLOADS = {workload.name: workload for workload in (LlamaPretraining(), RobertaGlue())}


def parameter_count(workload: str, size: str) -> int:
    """The parameters of a size's model (tied weights once), built on the meta device, which
    allocates nothing at any size."""
    with torch.device("meta"):
        model = WORKLOADS[workload].build_model(RunSpec(workload=workload, size=size, method="full"))
    return sum(parameter.numel() for parameter in model.parameters())
