"""The typed setting a record carries: what the spec's free option tables resolve to (the task,
the corpus, a low-rank method's rank with its default resolved), read through the workload's and
the method's own typed options, so that reports key rows on fields, not on dict lookups."""

from core.spec import RunSpec
from methods import METHODS
from results.schema import Setting
from workloads import WORKLOADS


def run_setting(spec: RunSpec) -> Setting:
    workload = WORKLOADS[spec.workload]
    return Setting(task=workload.task_name(spec), corpus=workload.corpus_name(spec),
                   rank=METHODS[spec.method].rank_of(spec))
