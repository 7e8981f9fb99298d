"""What the numbers were measured on: CPU, cores, memory, Python, tool versions, and how busy the box already was."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

__all__ = ["background_cpu_percent", "machine_info"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _version(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    out = (p.stdout + p.stderr).strip().splitlines()
    return out[0] if out else "?"


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts), idle


def background_cpu_percent(seconds: float = 1.0) -> float:
    """How busy all CPUs were (percent of the whole machine) over ``seconds`` before the harness adds any load."""
    t0, i0 = _cpu_times()
    time.sleep(seconds)
    t1, i1 = _cpu_times()
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


def machine_info() -> dict[str, str]:
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{_mem_gib():.0f} GiB",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "wrk": _version(["wrk", "--version"]).split(" Copyright")[0],
        "nginx": _version(["nginx", "-v"]),
    }
