"""What each run's Slurm job asks for: the suite's [launcher.slurm] table (or, from before
launchers were an axis, [slurm]), then the command line's flags."""

from dataclasses import dataclass

from core.options import at_least
from launchers.base import Flag


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
        if self.gpus_per_job < 0:
            raise ValueError(f"gpus_per_job = {self.gpus_per_job!r} must be 0 or more")
        if self.time_limit_min < 1:
            raise ValueError(f"time_limit_min = {self.time_limit_min!r} must be at least 1 (minutes)")


FLAGS = (
    Flag("partition", "partition", "Slurm partition (default: the suite's, else the cluster's)"),
    Flag("gpus_per_job", "gpus-per-job", "GPUs per Slurm job (default: the suite's, else 1)", at_least(0), "N"),
    Flag("time_limit_min", "time-limit", "Slurm time limit per job; a run still going is recorded timeout "
         "(default: the suite's time_limit_min, else 60)", at_least(1), "MINUTES"),
    Flag("account", "account", "Slurm account (default: the suite's, else yours)"),
)
