"""The local launcher: one worker process per run on this machine (parent.py starts them,
child.py is what they run)."""

from dataclasses import dataclass

from launchers.base import Launcher


@dataclass(frozen=True)
class LocalOptions:
    """The local launcher takes no options: `harness.py run`'s own flags say how runs go."""


LAUNCHER = Launcher("local", "one worker process per run on this machine (default)", LocalOptions,
                    "launchers.local.parent:LocalSession")
