"""core.roughness: the RMS per-period change and the high-frequency share of a command sequence."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from residual_control.core.roughness import (
    HF_CUTOFF_HZ, high_frequency_share, longest_finite_run, ratio, rms_step, roughness,
)

DT = 0.01
values = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False)


def sine(f_hz, amplitude, phase, k, offset=0.0, dt=DT):
    t = np.arange(k) * dt
    return offset + amplitude * np.sin(2 * math.pi * f_hz * t + phase)


@settings(max_examples=50, deadline=None)
@given(st.lists(values, min_size=1, max_size=7), st.integers(2, 400))
def test_a_constant_command_has_no_roughness(level, k):
    c = np.tile(np.asarray(level), (k, 1))
    r = roughness(c, DT)
    assert r["rms_step"] == [0.0] * len(level)
    assert r["hf_share"] == [0.0] * len(level)
    assert r["hf_cutoff_hz"] == HF_CUTOFF_HZ


@settings(max_examples=50, deadline=None)
@given(values, st.floats(-5.0, 5.0), st.integers(2, 500))
def test_rms_step_of_a_ramp_is_its_slope_per_period(start, slope, k):
    c = (start + slope * np.arange(k))[:, None]
    assert rms_step(c)[0] == pytest.approx(abs(slope), rel=1e-6, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.1, 2.0), st.floats(0.1, 50.0), st.floats(0, 2 * math.pi), st.integers(500, 2000), values)
def test_a_sine_below_the_cut_off_has_no_high_frequency_share(f, amplitude, phase, k, offset):
    share = roughness(sine(f, amplitude, phase, k, offset)[:, None], DT)["hf_share"][0]
    assert share < 0.01


@settings(max_examples=40, deadline=None)
@given(st.floats(10.0, 45.0), st.floats(0.1, 50.0), st.floats(0, 2 * math.pi), st.integers(500, 2000), values)
def test_a_sine_above_the_cut_off_is_all_high_frequency(f, amplitude, phase, k, offset):
    share = roughness(sine(f, amplitude, phase, k, offset)[:, None], DT)["hf_share"][0]
    assert share > 0.99


def test_a_slow_command_with_chatter_splits_its_power():
    """0.5 Hz of amplitude 1 plus 20 Hz of amplitude 1: half of the power each."""
    c = sine(0.5, 1.0, 0.0, 2000) + sine(20.0, 1.0, 0.3, 2000)
    assert roughness(c[:, None], DT)["hf_share"][0] == pytest.approx(0.5, abs=0.02)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(1e-3, 1e3), st.sampled_from([-1.0, 1.0]), values)
def test_hf_share_ignores_scale_and_offset(seed, scale, sign, offset):
    c = np.random.default_rng(seed).normal(size=(300, 3)).cumsum(axis=0)
    a = roughness(c, DT)["hf_share"]
    b = roughness(sign * scale * c + offset, DT)["hf_share"]
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9)
    assert all(0.0 <= x <= 1.0 for x in a)


def test_rms_step_scales_with_the_command():
    c = np.random.default_rng(1).normal(size=(200, 2))
    np.testing.assert_allclose(rms_step(3.0 * c), 3.0 * np.asarray(rms_step(c)), rtol=1e-12)


def test_a_command_alternating_every_period():
    c = np.where(np.arange(400) % 2 == 0, 1.5, -1.5)[:, None]
    r = roughness(c, DT)
    assert r["rms_step"][0] == pytest.approx(3.0)
    assert r["hf_share"][0] > 0.99


def test_periods_without_a_command():
    """rms_step drops the pairs with a NaN; hf_share is that of the longest finite run."""
    rng = np.random.default_rng(2)
    c = rng.normal(size=(100, 2))
    gappy = c.copy()
    gappy[[10, 11, 40], :] = np.nan
    gappy[70, 1] = np.inf
    d = np.diff(c, axis=0)
    keep0 = [k for k in range(99) if k not in (9, 10, 11, 39, 40)]
    keep1 = [k for k in keep0 if k not in (69, 70)]
    r = roughness(gappy, DT)
    assert r["rms_step"][0] == pytest.approx(float(np.sqrt(np.mean(d[keep0, 0] ** 2))))
    assert r["rms_step"][1] == pytest.approx(float(np.sqrt(np.mean(d[keep1, 1] ** 2))))
    assert r["hf_share"][0] == pytest.approx(high_frequency_share(c[41:, 0], DT))
    assert r["hf_share"][1] == pytest.approx(high_frequency_share(c[41:70, 1], DT))
    assert r["hf_share"][0] != pytest.approx(high_frequency_share(c[:, 0], DT))


def test_too_few_values_give_none_and_serialise():
    c = np.full((5, 2), np.nan)
    c[2, 0] = 1.0
    r = roughness(c, DT)
    assert r["rms_step"] == [None, None] and r["hf_share"] == [None, None]
    assert json.loads(json.dumps(r)) == r


@pytest.mark.parametrize("x, expected", [
    ([1, 2, 3], (0, 3)), ([np.nan, 1, np.nan, 1, 1], (3, 5)), ([np.nan], (0, 0)), ([1, np.nan, 1], (0, 1)),
])
def test_longest_finite_run(x, expected):
    assert longest_finite_run(x) == expected


def test_ratio():
    r = ratio({"rms_step": [2.0, 1.0, None], "hf_share": [0.5, 0.0, 0.2]},
              {"rms_step": [1.0, 0.0, 1.0], "hf_share": [0.25, 0.1, None]})
    assert r == {"rms_step": [2.0, None, None], "hf_share": [2.0, 0.0, None]}


@pytest.mark.parametrize("commands, dt, cutoff, match", [
    (np.zeros(10), DT, 5.0, r"shape \(K, n\).*found shape \(10,\)"),
    (np.zeros((10, 0)), DT, 5.0, r"n >= 1 joints, found shape \(10, 0\)"),
    ([["a", "b"]], DT, 5.0, r"array of numbers, found"),
    (np.zeros((10, 2)), 0.0, 5.0, r"dt a positive finite number of seconds, found 0.0"),
    (np.zeros((10, 2)), "x", 5.0, r"dt a positive number of seconds, found 'x'"),
    (np.zeros((10, 2)), DT, float("nan"), r"cutoff_hz a positive finite frequency, found nan"),
])
def test_bad_input_is_named(commands, dt, cutoff, match):
    with pytest.raises(ValueError, match=match):
        roughness(commands, dt, cutoff)
