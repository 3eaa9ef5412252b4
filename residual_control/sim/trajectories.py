"""Joint reference generators (pure numpy, time passed in explicitly).

Every trajectory has ``dof`` and ``sample(t) -> (q_ref, qd_ref, qdd_ref)``
(three float arrays of length ``dof``; rad, rad/s, rad/s^2).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence, Tuple

import numpy as np

Sample = Tuple[np.ndarray, np.ndarray, np.ndarray]


def _array(value, name: str, n=None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a list of numbers, found {value!r}") from exc
    if n is not None and arr.size != n:
        raise ValueError(f"{name}: expected {n} values (one per joint), found {arr.size}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected at least one value, found none")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite values, found {arr.tolist()}")
    return arr


def _time(t) -> float:
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"sample: expected a finite time, found {t}")
    return t


class Sinusoid:
    """q_ref_i(t) = center_i + amplitude_i * sin(2 pi frequency_hz_i t + phase_i)."""

    def __init__(self, center: Sequence[float], amplitude: Sequence[float],
                 frequency_hz: Sequence[float], phase: Sequence[float] = None) -> None:
        self.center = _array(center, "center")
        n = self.center.size
        self.amplitude = _array(amplitude, "amplitude", n)
        self.frequency_hz = _array(frequency_hz, "frequency_hz", n)
        self.phase = np.zeros(n) if phase is None else _array(phase, "phase", n)
        if np.any(self.frequency_hz < 0):
            raise ValueError(f"frequency_hz: expected values >= 0, found {self.frequency_hz.tolist()}")
        self._omega = 2.0 * math.pi * self.frequency_hz

    @property
    def dof(self) -> int:
        return int(self.center.size)

    def sample(self, t: float) -> Sample:
        arg = self._omega * _time(t) + self.phase
        s, c = np.sin(arg), np.cos(arg)
        q = self.center + self.amplitude * s
        qd = self.amplitude * self._omega * c
        qdd = -self.amplitude * self._omega ** 2 * s
        return q, qd, qdd


class MinimumJerk:
    """Point-to-point minimum-jerk motion through ``waypoints`` (K x dof).

    Each segment (waypoint k -> k+1) lasts ``segment_duration`` s with zero
    velocity and acceleration at both ends. Before t = 0 it holds the first
    waypoint; after the last one it holds it, unless ``cycle`` is true, in
    which case it goes back to the first waypoint and repeats forever.
    """

    def __init__(self, waypoints, segment_duration: float, cycle: bool = False) -> None:
        try:
            wp = np.asarray(waypoints, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"waypoints: expected a K x dof list of numbers, found {waypoints!r}") from exc
        if wp.ndim != 2 or wp.shape[0] < 2 or wp.shape[1] < 1:
            raise ValueError(f"waypoints: expected a K x dof array with K >= 2, found shape {wp.shape}")
        if not np.all(np.isfinite(wp)):
            raise ValueError("waypoints: expected finite values, found a non-finite value")
        segment_duration = float(segment_duration)
        if not (math.isfinite(segment_duration) and segment_duration > 0):
            raise ValueError(f"segment_duration: expected a finite value > 0, found {segment_duration}")
        self.waypoints = wp
        self.segment_duration = segment_duration
        self.cycle = bool(cycle)
        self._points = np.vstack([wp, wp[:1]]) if self.cycle else wp
        self._segments = self._points.shape[0] - 1

    @property
    def dof(self) -> int:
        return int(self.waypoints.shape[1])

    @property
    def duration(self) -> float:
        """Length of one pass (s); infinite motion when cycling."""
        return self._segments * self.segment_duration

    def sample(self, t: float) -> Sample:
        t = _time(t)
        zeros = np.zeros(self.dof)
        if t <= 0.0:
            return self._points[0].copy(), zeros, zeros.copy()
        if self.cycle:
            t = math.fmod(t, self.duration)
        elif t >= self.duration:
            return self._points[-1].copy(), zeros, zeros.copy()
        k = min(int(t // self.segment_duration), self._segments - 1)
        T = self.segment_duration
        s = (t - k * T) / T
        a, b = self._points[k], self._points[k + 1]
        d = b - a
        pos = 10 * s**3 - 15 * s**4 + 6 * s**5
        vel = (30 * s**2 - 60 * s**3 + 30 * s**4) / T
        acc = (60 * s - 180 * s**2 + 120 * s**3) / T**2
        return a + d * pos, d * vel, d * acc


_SPEC_KEYS = {
    "sinusoid": ({"center", "amplitude", "frequency_hz"}, {"phase"}),
    "min_jerk": ({"waypoints", "segment_duration"}, {"cycle", "n_joints"}),
}


def make_trajectory(spec: Mapping[str, object]):
    """Build a trajectory from a config dict.

    ``{"type": "sinusoid", "center": [...], "amplitude": [...],
    "frequency_hz": [...], "phase": [...] (optional)}`` or
    ``{"type": "min_jerk", "waypoints": [[...], ...] | flat list,
    "segment_duration": s, "cycle": bool (optional), "n_joints": n (needed
    for a flat waypoint list)}``. Unknown or missing keys raise ValueError.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"trajectory spec: expected a mapping, found {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in _SPEC_KEYS:
        raise ValueError(f"trajectory spec: expected type in {sorted(_SPEC_KEYS)}, found {kind!r}")
    required, optional = _SPEC_KEYS[kind]
    keys = set(spec) - {"type"}
    missing = sorted(required - keys)
    unknown = sorted(keys - required - optional)
    if missing or unknown:
        raise ValueError(
            f"trajectory spec ({kind}): expected keys {sorted(required)} (+ optional "
            f"{sorted(optional)}), found {sorted(keys)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown}" if unknown else "")
        )
    if kind == "sinusoid":
        return Sinusoid(spec["center"], spec["amplitude"], spec["frequency_hz"], spec.get("phase"))
    waypoints = spec["waypoints"]
    if "n_joints" in spec:
        n = int(spec["n_joints"])
        flat = _array(waypoints, "waypoints")
        if n < 1 or flat.size % n != 0:
            raise ValueError(
                f"waypoints: expected a multiple of n_joints={n} values, found {flat.size}"
            )
        waypoints = flat.reshape(-1, n)
    return MinimumJerk(waypoints, spec["segment_duration"], bool(spec.get("cycle", False)))


__all__ = ["Sinusoid", "MinimumJerk", "make_trajectory"]
