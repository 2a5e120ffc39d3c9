"""The load a figure was taken under, printed next to it: a figure from a busy machine is not a figure."""

from __future__ import annotations

import os
import time


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _own_jiffies() -> int:
    with open("/proc/self/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def machine_load(window_s: float = 0.5) -> str:
    """Load average (1, 5, 15 min) and the share of the CPUs other processes used over ``window_s``."""
    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    if not os.path.exists("/proc/stat"):
        return load
    busy0, total0 = _cpu_times()
    own0 = _own_jiffies()
    time.sleep(window_s)
    busy1, total1 = _cpu_times()
    others = (busy1 - busy0) - (_own_jiffies() - own0)
    return f"{load}; other processes used {100 * max(others, 0) / max(total1 - total0, 1):.0f}% of the CPUs"
