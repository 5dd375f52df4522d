"""The child side of a local run: what the fork-server worker process runs (parent.py starts it)."""

import gc
import json
import os
import select
import signal
import threading
from multiprocessing import forkserver
from pathlib import Path

from launchers.packages import recorded_packages
from launchers.processes import die_with_parent, exit_if_orphaned
from training.outcome import train_outcome


def _die_with_the_harness(harness_pid: int):
    """No run trains on without its harness, however the harness ends. The kernel kills this
    worker when the fork server exits, and the fork server exits when the harness does; but a
    fork server with torch imported takes seconds to shut down, so a thread also waits on the
    harness itself (a pidfd, readable the moment it exits) and kills the worker then."""
    _watch(harness_pid)
    die_with_parent()
    # The fork server exits once every holder of its "alive" pipe has closed it; it hands a
    # copy to each worker, so that it outlives its children. Ours closes that copy, leaving
    # the harness the only holder.
    alive_fd = forkserver._forkserver._forkserver_alive_fd
    if alive_fd is not None:
        os.close(alive_fd)
        forkserver._forkserver._forkserver_alive_fd = None
    exit_if_orphaned()  # the fork server was gone before the lines above took effect


def _watch(harness_pid: int):
    try:
        harness = os.pidfd_open(harness_pid)
    except ProcessLookupError:  # gone while this worker was being started
        os._exit(1)

    def kill_this_worker_once_the_harness_is_gone():
        select.select([harness], [], [])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=kill_this_worker_once_the_harness_is_gone, name="harness watch", daemon=True).start()


def worker(spec_json: dict, outcome_path: str, train_function, progress: bool, checkpoint_dir: str, harness_pid: int):
    """Runs in the child: set up, train, and write the outcome (success or caught failure) as
    the record's fields in JSON. `harness_pid`: the process that started it, which it dies with."""
    _die_with_the_harness(harness_pid)
    # What the fork server imported stays alive: collections (BAdam's on every block switch,
    # and the interpreter's own) then walk only this run's objects, not the imported modules'.
    gc.freeze()
    outcome = train_outcome(spec_json, train_function, progress, checkpoint_dir, recorded_packages())
    Path(outcome_path).write_text(json.dumps(outcome))
