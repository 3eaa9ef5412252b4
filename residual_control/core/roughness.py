"""Command roughness: how much a command sequence chatters, per joint.

Two numbers per joint, from the commands of consecutive control periods
(``commands`` of shape (K, n), one row per period ``dt`` apart):

* ``rms_step`` (N m): the RMS of the per-period change ``c[k+1] - c[k]``. A ramp
  of slope ``b`` per period has ``|b|``; a command that alternates by ``2a``
  every period has ``2a``.
* ``hf_share`` (0..1): the share of the command's power above
  :data:`HF_CUTOFF_HZ`, from the periodogram of the command with its mean
  removed and a Hann window applied (the window keeps a segment that does not
  hold whole periods, or drifts, from leaking power into the high band).
  Independent of the command's scale and offset; 0 for a constant command.

Why 5 Hz (:data:`HF_CUTOFF_HZ`): what tracking needs lies well below it. The
references of the shipped robots are sinusoids of 0.1 to 0.7 Hz and minimum-jerk
segments of 0.6 s and longer; the command that tracks them (inverse dynamics
along the reference plus the feedback on the tracking error) carries their
frequencies and low harmonics, about 2 Hz at most. The built-in arm's PD loop
(kp [60, 40] N m/rad on its inertia) has its natural frequency at 1.3 to 1.4 Hz
(shoulder) and 3.5 Hz (elbow). Power above 5 Hz is chatter: sensor noise through
the gains, a residual that switches from period to period. That is what excites
a gearbox's and a structure's resonances. The base alone has some (its sensor
noise); a residual is judged against the base's share on the same plant.

Periods without a command (a row with a non-finite value, e.g. NaN where no
command was received) are handled per joint: ``rms_step`` drops every pair with
a non-finite value (the change across a gap is not a per-period change), and
``hf_share`` uses the longest run of consecutive finite values (a spectrum
needs uniform sampling). A joint with fewer than two usable values has
``None`` for both (JSON null).

Pure numpy; no ROS.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import describe

#: Cut-off (Hz) of ``hf_share``: well above what tracking needs (see the module doc).
HF_CUTOFF_HZ = 5.0
#: A segment whose mean-removed RMS is at most this share of its largest magnitude is constant (share 0):
#: floating-point rounding of the mean leaves no meaningful spectrum.
CONSTANT_TOLERANCE = 1e-10


def _as_commands(commands) -> np.ndarray:
    try:
        c = np.asarray(commands, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"roughness: expected commands as a (K, n) array of numbers, found "
                         f"{describe(commands)} ({exc})") from None
    if c.ndim != 2 or c.shape[1] < 1:
        raise ValueError(f"roughness: expected commands of shape (K, n) with n >= 1 joints, found shape {c.shape}")
    return c


def _check_dt(dt) -> float:
    try:
        d = float(dt)
    except (TypeError, ValueError):
        raise ValueError(f"roughness: expected dt a positive number of seconds, found {describe(dt)}") from None
    if not math.isfinite(d) or d <= 0:
        raise ValueError(f"roughness: expected dt a positive finite number of seconds, found {d}")
    return d


def rms_step(commands) -> list:
    """Per joint: RMS of ``c[k+1] - c[k]`` over the pairs with both values finite (None: no such pair)."""
    c = _as_commands(commands)
    d = np.diff(c, axis=0)
    out = []
    for j in range(c.shape[1]):
        dj = d[:, j][np.isfinite(d[:, j])]
        out.append(float(np.sqrt(np.mean(dj ** 2))) if dj.size else None)
    return out


def longest_finite_run(x) -> tuple[int, int]:
    """Return ``(start, stop)`` of the longest run of consecutive finite values of 1-D ``x`` (the first of equals)."""
    finite = np.isfinite(np.asarray(x, dtype=float))
    best, start = (0, 0), None
    for k, ok in enumerate(np.append(finite, False)):
        if ok and start is None:
            start = k
        elif not ok and start is not None:
            if k - start > best[1] - best[0]:
                best = (start, k)
            start = None
    return best


def high_frequency_share(x, dt: float, cutoff_hz: float = HF_CUTOFF_HZ) -> float | None:
    """Share of the power of the 1-D finite ``x`` (mean removed, Hann window) above ``cutoff_hz``.

    None for fewer than two samples; 0.0 for a constant ``x``.
    """
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return None
    scale = float(np.max(np.abs(x)))
    x = x - np.mean(x)
    if scale == 0.0 or float(np.sqrt(np.mean(x ** 2))) <= CONSTANT_TOLERANCE * scale:
        return 0.0
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size + 2)[1:-1])) ** 2
    # One-sided periodogram: every bin but DC (and Nyquist, for an even length) stands for two.
    weight = np.full(spectrum.size, 2.0)
    weight[0] = 1.0
    if x.size % 2 == 0:
        weight[-1] = 1.0
    power = spectrum * weight
    total = float(np.sum(power))
    if total <= 0.0:
        return 0.0
    freq = np.fft.rfftfreq(x.size, dt)
    return float(np.sum(power[freq > cutoff_hz]) / total)


def roughness(commands, dt: float, cutoff_hz: float = HF_CUTOFF_HZ) -> dict:
    """Return ``{"rms_step": [per joint, N m], "hf_share": [per joint], "hf_cutoff_hz": cutoff_hz}``.

    ``commands``: (K, n), one row per control period ``dt`` (s) apart; a non-finite value is a period
    without a command (see the module doc for how it is handled). Values are None where a joint has
    fewer than two usable values.
    """
    c = _as_commands(commands)
    d = _check_dt(dt)
    cut = float(cutoff_hz)
    if not math.isfinite(cut) or cut <= 0:
        raise ValueError(f"roughness: expected cutoff_hz a positive finite frequency, found {cutoff_hz!r}")
    hf = []
    for j in range(c.shape[1]):
        start, stop = longest_finite_run(c[:, j])
        hf.append(high_frequency_share(c[start:stop, j], d, cut))
    return {"rms_step": rms_step(c), "hf_share": hf, "hf_cutoff_hz": cut}


def ratio(rough: dict, base: dict) -> dict:
    """Per joint, ``rough / base`` for ``rms_step`` and ``hf_share`` (None where undefined or the base is 0)."""
    def div(a, b):
        return None if a is None or b is None or b == 0 else float(a) / float(b)

    return {k: [div(a, b) for a, b in zip(rough[k], base[k])] for k in ("rms_step", "hf_share")}
