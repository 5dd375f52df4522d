"""The Slurm launcher: one submitit job per run (parent.py submits and collects, child.py is what
each job runs, options.py what each job asks for)."""

from launchers.base import Launcher
from launchers.slurm.options import FLAGS, SlurmOptions

LAUNCHER = Launcher("slurm", "one Slurm job per run, submitted with submitit; records appended here as jobs finish",
                    SlurmOptions, "launchers.slurm.parent:SlurmSession", flags=FLAGS, packages=("submitit",))
