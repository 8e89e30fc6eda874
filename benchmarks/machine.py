"""Machine facts the benchmarks print next to their figures."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, ``"n/a"`` where the system has none."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def machine_line() -> str:
    """``machine: <host> | <cpu> | <n> cores | load average <1 5 15>``, printed before the figures."""
    return (
        f"machine: {platform.node()} | {cpu_name()} | {os.cpu_count()} cores | load average {load_average()}"
    )
