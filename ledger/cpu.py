"""How busy this machine's cores are now, for code that decides whether a second process
or thread would help (``ledger deid``'s default ``--jobs``, batch token signing): on a
2-core machine a second worker speeds work up only while a core is idle.

``runnable`` is ``/proc/loadavg``'s count of threads running or waiting for a core, which,
unlike the load average, does not remember the last minute.
"""

from __future__ import annotations

import os


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def runnable() -> int | None:
    """Threads running or waiting for a core now, this one included; None where the
    system does not say (no ``/proc/loadavg``)."""
    try:
        with open("/proc/loadavg", encoding="ascii") as handle:
            return int(handle.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
