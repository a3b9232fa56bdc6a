"""A description of the machine, for reports and model cards (numbers mean little without it)."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), or the architecture elsewhere."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return cpu


def memory_gib() -> float | None:
    """Physical memory in GiB (Linux), or None where it cannot be read."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        return round(kib / 2**20, 1)
    return None


def machine_info(*, torch: bool = True) -> dict[str, Any]:
    """CPU, cores, memory and Python; with ``torch`` (when it is installed) its version, its
    thread count and the GPU it sees. Reports that never touch torch pass ``torch=False``: it
    takes seconds to import and a laptop running GGUF models may not have it."""
    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    if not torch:
        return info
    try:
        import torch as _torch
    except ImportError:
        return info
    info["torch"] = _torch.__version__
    info["torch_threads"] = _torch.get_num_threads()
    if _torch.cuda.is_available():
        info["gpu"] = _torch.cuda.get_device_name(0)
    return info


def machine_line(machine: dict[str, Any]) -> str:
    """One line for a report's header: CPU, cores, memory, GPU."""
    parts = [str(machine.get("cpu", "?")), f"{machine.get('cores', '?')} cores"]
    if machine.get("memory_gib"):
        parts.append(f"{machine['memory_gib']} GiB")
    if machine.get("gpu"):
        parts.append(str(machine["gpu"]))
    return ", ".join(parts)
