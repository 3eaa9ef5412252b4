"""Driving and stopping the processes a test starts."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable


def stop_group(proc: subprocess.Popen, timeout: float = 10.0, strict: bool = False) -> None:
    """SIGINT to the process group (a clean shutdown), SIGKILL if it is still there after ``timeout``.

    ``strict``: a process that did not stop on SIGINT within ``timeout`` fails the test
    (TimeoutExpired, after the SIGKILL).
    """
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        if strict:
            raise


def tick_until(tick: Callable[[], None], predicate: Callable[[], bool], timeout: float) -> bool:
    """Call ``tick`` until ``predicate()`` holds or ``timeout`` s pass; returns the predicate's last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tick()
        if predicate():
            return True
    return bool(predicate())
