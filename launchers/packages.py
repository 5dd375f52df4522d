"""Every distribution whose version a record names (the environment, meters/environment.py)."""

from launchers import LAUNCHERS
from meters.environment import BASE_PACKAGES
from methods import REGISTERED
from workloads import WORKLOADS


def recorded_packages() -> tuple[str, ...]:
    """What every run imports, and what each registered method, workload and launcher declares
    it imports, each once."""
    registered = [*REGISTERED.values(), *WORKLOADS.values(), *LAUNCHERS.values()]
    return tuple(dict.fromkeys([*BASE_PACKAGES, *(package for each in registered for package in each.packages)]))
