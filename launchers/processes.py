"""What every launcher's child side needs of its process: to die with its parent, so that no
run trains on after the process that started it is gone."""

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent():
    """The kernel kills this process when its parent exits, however it ends (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def exit_if_orphaned():
    """Exit at once if the parent was already gone before die_with_parent took effect."""
    if os.getppid() == 1:
        os._exit(1)
