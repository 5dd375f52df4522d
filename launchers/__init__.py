"""Registry of launchers: name -> Launcher (launchers/base.py has the contract). Adding a
launcher is one folder plus one line. The registry is light: each Launcher names its parent
side, imported only when it starts."""

from launchers import local, slurm

LAUNCHERS = {launcher.name: launcher for launcher in (local.LAUNCHER, slurm.LAUNCHER)}


def refuse_flags_of_others(chosen, args):
    """ValueError, in one line, for a flag of a launcher other than the chosen one."""
    for other in LAUNCHERS.values():
        given = other.given_flags(args) if other is not chosen else {}
        if given:
            flag = next(flag.name for flag in other.flags if flag.option in given)
            raise ValueError(f"--{flag} applies only with --launcher {other.name}")
