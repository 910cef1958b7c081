"""Helpers shared by benchmark scripts (figures printed, never asserted)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def timed(label: str, results: dict[str, float]) -> Iterator[None]:
    t = time.perf_counter()
    yield
    results[label] = time.perf_counter() - t


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def line(name: str, value: float, unit: str, extra: str = "") -> None:
    print(f"{name:<48} {value:>14,.1f} {unit:<10} {extra}")


def reap_cpu(proc: subprocess.Popen[bytes], deadline: float) -> float:
    """CPU seconds (user + system) of ``proc`` and its reaped children, killed at ``deadline`` (monotonic).

    wait4, not poll(): a child's rusage is only had when reaping it.
    """
    while True:
        pid, _, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, _, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    proc.returncode = 0  # reaped here: Popen must not wait for it again
    return ru.ru_utime + ru.ru_stime
