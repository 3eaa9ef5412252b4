"""A warning logged at most once per period, decided before rclpy's logger is called.

rclpy's ``throttle_duration_sec`` finds the caller's frame (``inspect``, file
system calls) on every call, logged or not: about 0.4 ms per call here, which
a node in trouble (perception lost, inputs refused) then pays at every control
period, at 1 kHz 40 % of a core, exactly when it must keep up. A
:class:`ThrottledWarning` checks the period first and calls the logger only when
it logs; the messages it held back are counted and said with the next one.
"""
from __future__ import annotations

import time


class ThrottledWarning:
    """``warn(message)``: log ``message`` as a warning unless one was logged less than ``period_s`` ago."""

    def __init__(self, logger, period_s: float = 1.0) -> None:
        self._logger = logger
        self.period_s = float(period_s)
        self._last = -float("inf")
        self.held_back = 0

    def __call__(self, message: str) -> bool:
        now = time.monotonic()
        if now - self._last < self.period_s:
            self.held_back += 1
            return False
        self._last = now
        if self.held_back:
            message = f"{message} ({self.held_back} more like it in the last {self.period_s:g} s)"
            self.held_back = 0
        self._logger.warning(message)
        return True
