"""nodes.throttle: a warning at most once per period; what it held back is counted and said with the next."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from residual_control.nodes import throttle
from residual_control.nodes.throttle import ThrottledWarning


class _Logger:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, message: str) -> None:
        self.lines.append(message)


def test_one_warning_per_period_and_the_held_back_ones_are_counted(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(throttle.time, "monotonic", lambda: now[0])
    log = _Logger()
    warn = ThrottledWarning(log, 1.0)
    assert warn("perception lost") is True
    for _ in range(5):
        now[0] += 0.1
        assert warn("perception lost") is False
    assert log.lines == ["perception lost"] and warn.held_back == 5
    now[0] += 0.6  # 1.1 s after the first
    assert warn("perception lost")
    assert log.lines[-1] == "perception lost (5 more like it in the last 1 s)" and warn.held_back == 0


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gaps=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=60), period=st.floats(0.05, 2.0))
def test_never_two_warnings_closer_than_the_period_and_nothing_lost(monkeypatch, gaps, period):
    now = [0.0]
    monkeypatch.setattr(throttle.time, "monotonic", lambda: now[0])
    log = _Logger()
    warn = ThrottledWarning(log, period)
    logged_at = []
    for g in gaps:
        now[0] += g
        if warn("x"):
            logged_at.append(now[0])
    assert logged_at and logged_at[0] == gaps[0]
    assert all(b - a >= period for a, b in zip(logged_at, logged_at[1:]))
    said = sum(int(line.split("(")[1].split()[0]) if "(" in line else 0 for line in log.lines)
    assert said + len(log.lines) + warn.held_back == len(gaps)  # every call logged, counted or still held
