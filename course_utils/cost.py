"""What training costs: wall time, peak memory and forward passes of the model, measured around any block of code."""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import PreTrainedModel

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
CPUINFO = Path("/proc/cpuinfo")


def _status_mb(field: str) -> float:
    """One memory field of /proc/self/status (e.g. VmRSS, VmHWM) in MB."""
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def hardware() -> str:
    """The machine a run's timings come from, in words: the GPU's name, or the CPU's model name and core count."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    model = f"{platform.machine()} CPU"
    if CPUINFO.exists():
        lines = CPUINFO.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        model = next((name for name in names if name), model)
    return f"{model}, {os.cpu_count()} cores"


def memory_kind() -> str:
    """What `measure` reports as peak memory on this machine."""
    if torch.cuda.is_available():
        return "peak CUDA memory allocated by tensors"
    if sys.platform == "linux" and CLEAR_REFS.exists():
        return "peak growth of the process's resident memory (CPU)"
    return "not measured on this platform"


def release_memory() -> None:
    """Free Python's garbage and hand freed memory back to the system (CUDA's cache; glibc's free heap pages)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform == "linux":
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed pages for reuse unless told otherwise
        except (OSError, AttributeError):  # a libc without malloc_trim (musl) keeps its own policy
            pass


def _reset_peak() -> float:
    """Free what can be freed, reset the peak counter and return the memory in use now (MB)."""
    release_memory()  # freed pages handed back, so they do not hide the next peak
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    CLEAR_REFS.write_text("5")  # Linux: reset the process's peak resident memory (VmHWM) to the current size
    return _status_mb("VmRSS")


def _peak() -> float:
    """Peak memory since the last `_reset_peak` (MB)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return _status_mb("VmHWM")


@contextmanager
def measure() -> Iterator[dict]:
    """Measure the block: `seconds`, `peak_memory_mb` (above what was in use before) and `forward_passes`."""
    result: dict = {}  # filled in when the block ends
    measurable = memory_kind() != "not measured on this platform"
    start_mb = _reset_peak() if measurable else 0.0

    def count(module: torch.nn.Module, args: tuple, output: object) -> None:
        if isinstance(module, PreTrainedModel) and module.can_generate():  # whole models, not their layers
            result["forward_passes"] += 1

    result["forward_passes"] = 0
    handle = torch.nn.modules.module.register_module_forward_hook(count)
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - start
        handle.remove()
        result["peak_memory_mb"] = _peak() - start_mb if measurable else None


def peak_of(*results: dict) -> float | None:
    """The highest `peak_memory_mb` of several measured blocks (e.g. both stages of SFT→DPO); None if unmeasured."""
    peaks = [r["peak_memory_mb"] for r in results]
    return None if None in peaks else max(peaks)
