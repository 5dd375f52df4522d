"""Where a suite's runs go on a Slurm cluster (`harness.py run --launcher slurm`): the suite's
[slurm] table, then the command line's --partition, --gpus-per-job, --time-limit, --account.

A suite may ship the table so that its paper-sized runs ask for what they need; it is read and
checked with the rest of the suite, and ignored by local runs.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class SlurmOptions:
    """What each run's Slurm job asks for."""

    partition: str | None = None
    """The partition jobs go to (sbatch --partition); None: the cluster's default."""
    gpus_per_job: int = 1
    """GPUs each job asks for (sbatch --gpus-per-node); 0 for runs on CPU."""
    time_limit_min: int = 60
    """Minutes each job may run (sbatch --time); a run still going when Slurm warns of the limit
    is stopped and recorded timeout."""
    account: str | None = None
    """The account jobs are charged to (sbatch --account); None: the user's default."""

    def __post_init__(self):
        # Named as in the suite file: the command line's values are checked by argparse.
        if self.gpus_per_job < 0:
            raise ValueError(f"slurm.gpus_per_job = {self.gpus_per_job!r} must be 0 or more")
        if self.time_limit_min < 1:
            raise ValueError(f"slurm.time_limit_min = {self.time_limit_min!r} must be at least 1 (minutes)")
