"""Waiting on what a child process does, not on the clock: a line it writes to a pipe, its exit,
a state no pipe announces. Every wait ends at the event; the one timeout, HANG_GUARD_S, is a
safety net that turns a hang into a failure, never a measurement."""

import os
import queue
import select
import threading
import time
from typing import Callable, TextIO

import psutil

HANG_GUARD_S = 1800
"""Seconds after which a wait is a hang, not a slow machine: a harness's start-up, seconds on a
quiet machine here, took over three minutes at a load average of 16 (two CPU burners and other
test suites beside these tests on 2 cores)."""


class OutputLines:
    """The lines a child writes to one of its pipes, read by a thread to the pipe's end, so that
    the child never blocks on a full pipe however much it writes after the line a test waits for."""

    def __init__(self, pipe: TextIO):
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._ended = False
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(pipe,), name="pipe reader", daemon=True).start()

    def _read(self, pipe: TextIO):
        with pipe:
            for line in pipe:
                self._lines.put(line)
        self._lines.put(None)  # every holder of the pipe's other end has closed it

    def next_line(self) -> str | None:
        """The next line, or None once the pipe has ended."""
        if self._ended:
            return None
        try:
            line = self._lines.get(timeout=HANG_GUARD_S)
        except queue.Empty:
            raise AssertionError(f"no line in {HANG_GUARD_S} s (hang guard); the last ones: {self.seen[-5:]}") from None
        self._ended = line is None
        if line is not None:
            self.seen.append(line)
        return line

    def wait_for(self, text: str) -> str:
        """The first line from here on that holds `text`; AssertionError if the pipe ends first."""
        while (line := self.next_line()) is not None:
            if text in line:
                return line
        raise AssertionError(f"the pipe ended before a line with {text!r}; the last ones: {self.seen[-5:]}")


def ended(pid: int) -> bool:
    """Whether the process `pid` ends (a zombie has ended) within the hang guard, waited for on
    its pidfd, readable from the moment it exits, as the local launcher's workers watch their
    harness (launchers/local/child.py)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], HANG_GUARD_S)
        return bool(readable)
    finally:
        os.close(pidfd)


def all_ended(processes: list[psutil.Process]) -> bool:
    """Whether every one of them ends (zombies count as ended) within the hang guard."""
    # is_running() first: a process already ended and reaped may have left its pid to another.
    return all(ended(process.pid) for process in processes if process.is_running())


def wait_until(condition: Callable[[], object], what: str, interval_s: float = 0.01):
    """Until `condition()` is true, for a process state that nothing announces (a process
    started): looked at every interval_s, so the wait ends within that of the state; the hang
    guard ends it otherwise."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not so after {HANG_GUARD_S} s (hang guard)"
        time.sleep(interval_s)
