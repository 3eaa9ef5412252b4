"""Mixer / MixerConfig.

Formula, name matching, fallback state machine, base faults, live tuning, bumpless fallback (the
residual decays over fallback_ramp_time) and the damp safe stop.

a = clip(a_base + g * clip(da, -eps, eps), cmd_min, cmd_max), joints matched by name.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from residual_control.core.errors import ConfigError
from residual_control.core.mixer import Mixer, MixerConfig, Mode, residual_bound_ok

J = ("shoulder", "elbow")
NAN, INF = float("nan"), float("inf")


def make_config(**overrides) -> MixerConfig:
    values = dict(joints=J, residual_limit=[12.0, 6.0], residual_limit_max=[25.0, 12.0],
                  command_min=[-60.0, -30.0], command_max=[60.0, 30.0], residual_gain=1.0,
                  residual_timeout=0.05, observation_timeout=0.1, base_timeout=0.05,
                  recovery_hold_time=0.5, recovery_ramp_time=1.0, base_stale_behavior="stop",
                  fallback_ramp_time=0.0)  # 0: the step fallback; the decay has its own tests below
    values.update(overrides)
    return MixerConfig(**values)


def nominal_mixer(t: float = 0.0, residual=(0.0, 0.0), **overrides) -> Mixer:
    """Return a mixer already in NOMINAL at time t (no hold, no ramp unless overridden afterwards)."""
    later = {k: overrides.pop(k) for k in ("recovery_hold_time", "recovery_ramp_time") if k in overrides}
    m = Mixer(make_config(recovery_hold_time=0.0, recovery_ramp_time=0.0, **overrides))
    assert m.update_residual(J, residual, t, t) == ""
    out = m.step(J, [0.0, 0.0], t, t)
    assert out.mode is Mode.NOMINAL, out.reason
    if later:
        m.reconfigure(**later)
    return m


def feed(m: Mixer, t: float, residual, base=(0.0, 0.0), names=J):
    """Feed a fresh residual and base action at t; returns the step output."""
    assert m.update_residual(names, residual, t, t) == ""
    return m.step(names, base, t, t)


# ----------------------------------------------------------------- formula
def test_formula_nominal_gain_one():
    m = nominal_mixer()
    out = feed(m, 0.01, residual=[5.0, -100.0], base=[10.0, 29.0])
    # elbow residual -100 clipped to -6
    np.testing.assert_allclose(out.command, [15.0, 23.0])
    np.testing.assert_allclose(out.base, [10.0, 29.0])
    np.testing.assert_allclose(out.applied_residual, [5.0, -6.0])
    assert out.residual_clamped is True
    assert out.gain == 1.0 and out.mode is Mode.NOMINAL


def test_formula_with_gain_and_command_clip():
    m = nominal_mixer(residual_gain=0.5)
    out = feed(m, 0.01, residual=[100.0, 4.0], base=[10.0, 29.0])
    # g * clip(da) = [6, 2]; elbow 29 + 2 = 31 -> clipped to 30
    np.testing.assert_allclose(out.applied_residual, [6.0, 2.0])
    np.testing.assert_allclose(out.command, [16.0, 30.0])
    out = feed(m, 0.02, residual=[-1.0, 1.0], base=[-100.0, 0.0])
    np.testing.assert_allclose(out.command, [-60.0, 0.5])
    assert out.residual_clamped is False


def test_base_outside_limits_is_clipped_in_fallback():
    m = Mixer(make_config())
    out = m.step(J, [100.0, -100.0], 0.0, 0.0)
    assert out.mode is Mode.FALLBACK
    np.testing.assert_allclose(out.command, [60.0, -30.0])


# ----------------------------------------------------------------- names
def test_shuffled_names_give_same_command():
    a, b = nominal_mixer(), nominal_mixer()
    out_a = feed(a, 0.01, residual=[3.0, -2.0], base=[10.0, 5.0])
    rev = tuple(reversed(J))
    assert b.update_residual(rev, [-2.0, 3.0], 0.01, 0.01) == ""
    out_b = b.step(rev, [5.0, 10.0], 0.01, 0.01)
    np.testing.assert_allclose(out_a.command, [13.0, 3.0])
    np.testing.assert_array_equal(out_a.command, out_b.command)
    np.testing.assert_array_equal(out_b.base, [10.0, 5.0])


def test_residual_and_base_may_use_different_orders():
    m = nominal_mixer()
    assert m.update_residual(("elbow", "shoulder"), [1.0, 2.0], 0.01, 0.01) == ""
    out = m.step(J, [0.0, 0.0], 0.01, 0.01)
    np.testing.assert_allclose(out.command, [2.0, 1.0])


# ----------------------------------------------------------------- state machine
def test_fallback_at_start():
    m = Mixer(make_config())
    assert m.mode is Mode.FALLBACK
    out = m.step(J, [1.0, 2.0], 0.0, 0.0)
    assert out.mode is Mode.FALLBACK and out.gain == 0.0
    assert "no residual" in out.reason
    np.testing.assert_allclose(out.command, [1.0, 2.0])
    np.testing.assert_array_equal(out.applied_residual, [0.0, 0.0])


def test_hold_ramp_nominal_sequence():
    g, hold, ramp = 0.8, 0.5, 1.0
    m = Mixer(make_config(residual_gain=g, recovery_hold_time=hold, recovery_ramp_time=ramp))
    da = np.array([10.0, 5.0])  # inside eps
    modes, gains = [], []
    for k in range(0, 200):
        t = k / 100.0
        out = feed(m, t, residual=da, base=[1.0, -1.0])
        modes.append(out.mode)
        gains.append(out.gain)
        np.testing.assert_allclose(out.applied_residual, out.gain * da, atol=1e-12)
        np.testing.assert_allclose(out.command, np.array([1.0, -1.0]) + out.gain * da, atol=1e-12)
        if t < hold:
            assert out.mode is Mode.FALLBACK and out.gain == 0.0, t
            assert "holding" in out.reason
        elif t < hold + ramp - 1e-9:
            assert out.mode is Mode.RECOVERING, t
            assert out.gain == pytest.approx(g * (t - hold) / ramp, abs=1e-9)
        else:
            assert out.mode is Mode.NOMINAL, t
            assert out.gain == g
    # transitions flagged exactly once each
    assert modes.count(Mode.RECOVERING) == 100
    assert np.all(np.diff(gains) >= -1e-12)
    assert m.stats.fallback_count == 0


def test_transition_flag():
    m = Mixer(make_config(recovery_hold_time=0.0, recovery_ramp_time=0.0))
    first = m.step(J, [0, 0], 0.0, 0.0)
    assert first.transition is False  # FALLBACK -> FALLBACK
    out = feed(m, 0.01, [1.0, 1.0])
    assert out.transition is True and out.mode is Mode.NOMINAL
    assert feed(m, 0.02, [1.0, 1.0]).transition is False


def test_hold_restarts_when_residual_becomes_unhealthy():
    m = Mixer(make_config(recovery_hold_time=0.5, recovery_ramp_time=0.0))
    for k in range(40):  # 0.39 s healthy
        assert feed(m, k / 100, [1.0, 1.0]).mode is Mode.FALLBACK
    m.update_residual(J, [NAN, 0.0], 0.40, 0.40)
    assert m.step(J, [0, 0], 0.40, 0.40).mode is Mode.FALLBACK
    # the hold starts again: 0.41 .. 0.90 is < 0.5 s
    for k in range(41, 91):
        assert feed(m, k / 100, [1.0, 1.0]).mode is Mode.FALLBACK, k
    assert feed(m, 0.91, [1.0, 1.0]).mode is Mode.NOMINAL


# ----------------------------------------------------------------- unhealthy residual
def _unhealthy_cases():
    # (name, action(m, t) applied at t after NOMINAL, expected reason fragment)
    return [
        ("residual_timeout", lambda m, t: None, "residual stale"),
        ("observation_timeout", lambda m, t: m.update_residual(J, [1.0, 1.0], t - 0.2, t), "observation stale"),
        ("future_stamp", lambda m, t: m.update_residual(J, [1.0, 1.0], t + 1.0, t), "future"),
        ("nan", lambda m, t: m.update_residual(J, [NAN, 1.0], t, t), "finite"),
        ("inf", lambda m, t: m.update_residual(J, [1.0, -INF], t, t), "finite"),
        ("nan_stamp", lambda m, t: m.update_residual(J, [1.0, 1.0], NAN, t), "finite stamp"),
        ("unknown", lambda m, t: m.update_residual(("shoulder", "wrist"), [1.0, 1.0], t, t), "unknown ['wrist']"),
        ("missing", lambda m, t: m.update_residual(("shoulder",), [1.0], t, t), "missing ['elbow']"),
        ("duplicate", lambda m, t: m.update_residual(("elbow", "elbow"), [1.0, 1.0], t, t), "duplicates ['elbow']"),
        ("extra", lambda m, t: m.update_residual(("shoulder", "elbow", "wrist"), [1, 1, 1], t, t), "unknown"),
        ("length", lambda m, t: m.update_residual(J, [1.0, 1.0, 1.0], t, t), "2 names and 3 values"),
        ("not_numbers", lambda m, t: m.update_residual(J, ["a", "b"], t, t), "expected 2 numbers"),
    ]


@pytest.mark.parametrize("name, action, fragment", _unhealthy_cases(), ids=[c[0] for c in _unhealthy_cases()])
def test_unhealthy_residual_falls_back_immediately(name, action, fragment):
    m = nominal_mixer(residual=[1.0, 1.0])
    t = 0.01 if name != "residual_timeout" else 0.06
    if name == "residual_timeout":  # one step still inside the timeout
        out = m.step(J, [2.0, 2.0], 0.05, 0.05)
        assert out.mode is Mode.NOMINAL
    before = m.stats.rejected_residuals
    action(m, t)
    out = m.step(J, [2.0, 2.0], t, t)
    assert out.mode is Mode.FALLBACK, name
    assert fragment in out.reason, (name, out.reason)
    assert out.gain == 0.0
    np.testing.assert_allclose(out.command, [2.0, 2.0])
    assert m.stats.fallback_count == 1
    if name not in ("residual_timeout", "observation_timeout", "future_stamp"):
        assert m.stats.rejected_residuals == before + 1
        assert fragment.split(" [")[0] in m.stats.last_rejection


def test_rejected_residual_reason_is_returned():
    m = Mixer(make_config())
    err = m.update_residual(("shoulder", "wrist"), [0, 0], 0.0, 0.0)
    assert "expected joints ['shoulder', 'elbow']" in err and "wrist" in err
    assert m.update_residual(J, [0.0, 0.0], 0.0, 0.0) == ""


def test_slightly_future_stamp_within_tolerance_is_accepted():
    m = nominal_mixer()
    m.update_residual(J, [1.0, 1.0], 0.01 + 0.05, 0.01)  # 50 ms ahead, observation_timeout 0.1
    assert m.step(J, [0, 0], 0.01, 0.01).mode is Mode.NOMINAL


def test_recovery_needs_fresh_valid_residual():
    m = nominal_mixer(residual=[1.0, 1.0], recovery_hold_time=0.1, recovery_ramp_time=0.1)
    # stale: no residual after t=0 -> FALLBACK and stays there however long we wait
    for k in range(6, 300):
        out = m.step(J, [0.0, 0.0], k / 100, k / 100)
        assert out.mode is Mode.FALLBACK and out.gain == 0.0
    # an invalid residual does not count as healthy either
    m.update_residual(J, [NAN, NAN], 3.0, 3.0)
    for k in range(300, 400):
        assert m.step(J, [0.0, 0.0], k / 100, k / 100).mode is Mode.FALLBACK
    # a residual with an old source stamp is not fresh
    for k in range(400, 450):
        m.update_residual(J, [1.0, 1.0], 0.0, k / 100)
        assert m.step(J, [0.0, 0.0], k / 100, k / 100).mode is Mode.FALLBACK
    # fresh valid residuals: hold, ramp, nominal
    seen = []
    for k in range(450, 500):
        seen.append(feed(m, k / 100, [1.0, 1.0]).mode)
    assert seen[0] is Mode.FALLBACK and Mode.RECOVERING in seen and seen[-1] is Mode.NOMINAL


# ----------------------------------------------------------------- base faults
@pytest.mark.parametrize("behavior", ["stop", "zero", "hold"])
@pytest.mark.parametrize("fault", ["stale", "future", "nan", "unknown", "missing", "nan_stamp"])
def test_base_fault_behaviors(behavior, fault):
    # command_min above zero on the shoulder so that "zero" must be clipped
    m = nominal_mixer(base_stale_behavior=behavior, command_min=[1.0, -30.0])
    last = feed(m, 0.01, [2.0, 3.0], base=[10.0, -5.0]).command
    np.testing.assert_allclose(last, [12.0, -2.0])
    t = 0.02
    args = {
        "stale": (J, [1.0, 1.0], t - 0.06),
        "future": (J, [1.0, 1.0], t + 0.06),
        "nan": (J, [NAN, 1.0], t),
        "unknown": (("shoulder", "wrist"), [1.0, 1.0], t),
        "missing": (("shoulder",), [1.0], t),
        "nan_stamp": (J, [1.0, 1.0], NAN),
    }[fault]
    m.update_residual(J, [2.0, 3.0], t, t)
    out = m.step(*args, t)
    assert out.mode is Mode.BASE_FAULT and m.mode is Mode.BASE_FAULT
    assert out.base is None and out.gain == 0.0
    assert "base action" in out.reason
    assert m.stats.fallback_count == 1
    if behavior == "stop":
        assert out.command is None
    elif behavior == "zero":
        np.testing.assert_array_equal(out.command, [1.0, 0.0])
    else:
        np.testing.assert_array_equal(out.command, last)


def test_base_fault_reason_names_cause():
    m = nominal_mixer()
    assert "stale" in m.step(J, [0, 0], 0.0, 0.1).reason
    assert "future" in m.step(J, [0, 0], 1.0, 0.11).reason
    assert "finite" in m.step(J, [INF, 0], 0.12, 0.12).reason
    assert m.stats.rejected_bases == 1


def test_hold_is_clipped_to_current_limits():
    m = nominal_mixer(base_stale_behavior="hold")
    last = feed(m, 0.01, [0.0, 0.0], base=[50.0, -20.0]).command
    np.testing.assert_allclose(last, [50.0, -20.0])
    m.reconfigure(command_max=[40.0, 30.0], command_min=[-60.0, -10.0])
    out = m.step(J, [0, 0], 0.0, 0.5)  # stale
    np.testing.assert_allclose(out.command, [40.0, -10.0])


def test_hold_without_previous_command_is_clipped_zero():
    m = Mixer(make_config(base_stale_behavior="hold", command_max=[60.0, -1.0]))
    out = m.step(J, [0, 0], -1.0, 0.0)
    assert out.mode is Mode.BASE_FAULT
    np.testing.assert_array_equal(out.command, [0.0, -1.0])


def test_recovery_after_base_fault_goes_through_hold():
    m = nominal_mixer(recovery_hold_time=0.1, recovery_ramp_time=0.1, residual=[1.0, 1.0])
    assert m.step(J, [NAN, 0], 0.01, 0.01).mode is Mode.BASE_FAULT
    out = feed(m, 0.02, [1.0, 1.0])
    assert out.mode is Mode.FALLBACK and out.gain == 0.0
    modes = [feed(m, k / 100, [1.0, 1.0]).mode for k in range(3, 40)]
    assert Mode.RECOVERING in modes and modes[-1] is Mode.NOMINAL


# ----------------------------------------------------------------- check_base watchdog
@pytest.mark.parametrize("behavior", ["stop", "zero"])
def test_check_base_watchdog(behavior):
    m = Mixer(make_config(base_stale_behavior=behavior))
    m.step(J, [1.0, 1.0], 10.0, 10.0)
    assert m.check_base(10.0) is None
    assert m.check_base(10.04) is None
    out = m.check_base(10.06)
    assert out is not None and out.mode is Mode.BASE_FAULT and m.mode is Mode.BASE_FAULT
    assert "last received 0.060 s ago" in out.reason
    if behavior == "stop":
        assert out.command is None
    else:
        np.testing.assert_array_equal(out.command, [0.0, 0.0])
    # a new base action clears the watchdog
    m.step(J, [1.0, 1.0], 10.07, 10.07)
    assert m.check_base(10.08) is None


def test_check_base_never_received():
    m = Mixer(make_config())
    assert m.check_base(5.0) is None  # starts the watchdog
    assert m.check_base(5.04) is None
    out = m.check_base(5.1)
    assert out.mode is Mode.BASE_FAULT and "never received" in out.reason


def test_check_base_from_nominal_counts_a_fallback():
    m = nominal_mixer()
    assert m.check_base(1.0).mode is Mode.BASE_FAULT
    assert m.stats.fallback_count == 1


# ----------------------------------------------------------------- clock jumps
def test_clock_jump_backwards_resets_to_fallback():
    m = nominal_mixer(t=100.0, residual=[1.0, 1.0], recovery_hold_time=0.2)
    assert feed(m, 100.01, [1.0, 1.0]).mode is Mode.NOMINAL
    out = m.step(J, [0.0, 0.0], 5.0, 5.0)  # sim reset: time jumped back
    assert out.mode is Mode.FALLBACK and out.gain == 0.0
    assert "clock jumped back" in out.reason
    assert m.stats.fallback_count == 1
    # the residual received before the jump is forgotten
    assert m.step(J, [0.0, 0.0], 5.01, 5.01).mode is Mode.FALLBACK
    assert m.residual_age(5.01) is None
    # fresh ones recover after the hold
    modes = [feed(m, 5.0 + k / 100, [1.0, 1.0]).mode for k in range(2, 30)]
    assert modes[0] is Mode.FALLBACK and modes[-1] is Mode.NOMINAL


def test_clock_jump_backwards_in_check_base():
    m = nominal_mixer(t=100.0)
    assert m.check_base(50.0) is None  # watchdog restarts at the new time
    assert m.mode is Mode.FALLBACK
    assert m.check_base(50.06).mode is Mode.BASE_FAULT


# ----------------------------------------------------------------- live reconfigure
def test_reconfigure_applies_on_next_step():
    m = nominal_mixer()
    assert np.allclose(feed(m, 0.01, [10.0, 5.0]).command, [10.0, 5.0])
    cfg = m.reconfigure(residual_limit=[2.0, 1.0])
    assert m.config is cfg
    np.testing.assert_allclose(feed(m, 0.02, [10.0, 5.0]).command, [2.0, 1.0])
    m.reconfigure(residual_gain=0.5)
    np.testing.assert_allclose(feed(m, 0.03, [10.0, 5.0]).command, [1.0, 0.5])
    m.reconfigure(command_max=[0.5, 30.0])
    np.testing.assert_allclose(feed(m, 0.04, [10.0, 5.0]).command, [0.5, 0.5])
    m.reconfigure(residual_gain=0.0)
    np.testing.assert_allclose(feed(m, 0.05, [10.0, 5.0]).command, [0.0, 0.0])
    m.reconfigure(residual_limit=[25.0, 12.0], residual_gain=1.0)  # up to the ceiling is allowed
    np.testing.assert_allclose(feed(m, 0.06, [10.0, 5.0]).command, [0.5, 5.0])


def test_reconfigure_timeouts_apply():
    m = nominal_mixer(residual=[1.0, 1.0])
    m.reconfigure(residual_timeout=0.5)
    assert m.step(J, [0, 0], 0.09, 0.09).mode is Mode.NOMINAL
    m.reconfigure(residual_timeout=0.01)
    out = m.step(J, [0, 0], 0.095, 0.095)
    assert out.mode is Mode.FALLBACK and "residual_timeout 0.01" in out.reason


BAD_CHANGES = [
    ({"residual_limit": [-1.0, 6.0]}, "residual_limit", ">= 0"),
    ({"residual_limit": [NAN, 6.0]}, "residual_limit", "finite"),
    ({"residual_limit": [1.0, 2.0, 3.0]}, "residual_limit", "expected 2 values"),
    ({"residual_limit": [1.0]}, "residual_limit", "expected 2 values"),
    ({"residual_limit": [26.0, 6.0]}, "residual_limit", "residual_limit_max"),
    ({"residual_limit": "big"}, "residual_limit", "expected 2"),
    ({"residual_gain": 1.5}, "residual_gain", "[0, 1]"),
    ({"residual_gain": -0.1}, "residual_gain", "[0, 1]"),
    ({"residual_gain": NAN}, "residual_gain", "[0, 1]"),
    ({"residual_timeout": 0.0}, "residual_timeout", ">= 0.0001"),
    ({"observation_timeout": -1.0}, "observation_timeout", ">= 0.0001"),
    ({"base_timeout": NAN}, "base_timeout", "finite"),
    ({"base_timeout": INF}, "base_timeout", "finite"),
    ({"recovery_hold_time": -0.1}, "recovery_hold_time", ">= 0"),
    ({"recovery_ramp_time": NAN}, "recovery_ramp_time", "finite"),
    ({"base_stale_behavior": "explode"}, "base_stale_behavior", "['damp', 'stop', 'zero', 'hold']"),
    ({"fallback_ramp_time": -0.1}, "fallback_ramp_time", "[0, 1]"),
    ({"fallback_ramp_time": 1.5}, "fallback_ramp_time", "[0, 1]"),
    ({"fallback_ramp_time": NAN}, "fallback_ramp_time", "[0, 1]"),
    ({"damp_kd": [-1.0, 0.0]}, "damp_kd", ">= 0"),
    ({"damp_kd": [1.0]}, "damp_kd", "expected 2 values"),
    ({"command_min": [61.0, -30.0]}, "command_min", "command_min <= command_max"),
    ({"command_max": [60.0, INF]}, "command_max", "finite"),
]


@pytest.mark.parametrize("change, field, fragment", BAD_CHANGES,
                         ids=[f"{list(c)[0]}-{i}" for i, (c, _, _) in enumerate(BAD_CHANGES)])
def test_reconfigure_rejects_invalid_and_keeps_config(change, field, fragment):
    m = nominal_mixer()
    before = m.config
    ref = feed(m, 0.01, [30.0, -30.0], base=[1.0, 2.0]).command
    with pytest.raises(ConfigError) as info:
        m.reconfigure(**change)
    msg = str(info.value)
    assert field in msg and fragment in msg, msg
    assert "expected" in msg and "found" in msg, msg
    assert m.config is before
    out = feed(m, 0.02, [30.0, -30.0], base=[1.0, 2.0])
    np.testing.assert_array_equal(out.command, ref)
    assert out.mode is Mode.NOMINAL


@pytest.mark.parametrize("change", [{"joints": ("elbow", "shoulder")}, {"joints": ("a", "b")},
                                    {"residual_limit_max": [50.0, 50.0]}])
def test_reconfigure_read_only_fields_rejected(change):
    m = nominal_mixer()
    before = m.config
    with pytest.raises(ConfigError, match=f"{list(change)[0]}: read-only"):
        m.reconfigure(**change)
    assert m.config is before
    assert m.config.joints == J


@pytest.mark.parametrize("change, found", [({"joints": ("a", "b")}, "'a'"),
                                           ({"residual_limit_max": [50.0, 50.0]}, "50.0")])
def test_reconfigure_read_only_message_names_expected_and_found(change, found):
    m = nominal_mixer()
    with pytest.raises(ConfigError) as info:
        m.reconfigure(**change)
    msg = str(info.value)
    assert "expected" in msg and "found" in msg and found in msg, msg


def test_reconfigure_same_joints_is_allowed():
    m = nominal_mixer()
    m.reconfigure(joints=list(J), residual_gain=0.25)
    assert m.config.residual_gain == 0.25


# ----------------------------------------------------------------- config construction
@pytest.mark.parametrize("overrides, fragment", [
    ({"joints": (), "residual_limit": [], "residual_limit_max": [], "command_min": [], "command_max": []},
     "at least one joint"),
    ({"joints": ("a", "b", "c")}, "expected 3 values"),
    ({"joints": ("a", "a"), }, "unique"),
    ({"joints": ("a", "")}, "non-empty"),
    ({"residual_limit": [30.0, 6.0]}, "residual_limit_max"),
    ({"residual_limit_max": [-1.0, 12.0]}, "residual_limit_max: expected values >= 0"),
    ({"command_min": [0.0, 0.0], "command_max": [-1.0, 1.0]}, "command_min <= command_max"),
    ({"residual_gain": 2.0}, "residual_gain"),
    ({"residual_gain": "1"}, "residual_gain"),
])
def test_config_validation(overrides, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        make_config(**overrides)
    assert fragment in str(info.value)


def test_config_vectors_read_only_and_from_params():
    cfg = MixerConfig.from_params({"joints": list(J), "residual_limit": [1, 2], "residual_limit_max": [3, 4],
                                   "command_min": [-1, -1], "command_max": [1, 1], "diagnostics_period": 0.5})
    assert cfg.joints == J and cfg.residual_limit.dtype == float
    with pytest.raises(ValueError):
        cfg.residual_limit[0] = 100.0


# ----------------------------------------------------------------- stats
def test_stats_clamped_share_and_fallback_count():
    m = nominal_mixer()
    assert m.stats.steps == 1 and m.stats.clamped_share == 0.0
    feed(m, 0.01, [100.0, 0.0])   # clamped
    feed(m, 0.02, [1.0, 0.0])
    feed(m, 0.03, [1.0, -7.0])    # clamped
    assert m.stats.steps == 4 and m.stats.clamped_steps == 2
    assert m.stats.clamped_share == pytest.approx(0.5)
    # a clamp while in fallback does not count: the residual is not applied
    m.update_residual(J, [100.0, 0.0], -0.5, 0.1)  # observation stale
    assert m.step(J, [0, 0], 0.1, 0.1).mode is Mode.FALLBACK
    assert m.stats.clamped_steps == 2 and m.stats.steps == 5
    assert m.stats.fallback_count == 1
    # staying in fallback does not count again
    m.step(J, [0, 0], 0.11, 0.11)
    assert m.stats.fallback_count == 1
    # recover and fall back again
    feed(m, 0.2, [0.0, 0.0])
    assert m.mode is Mode.NOMINAL
    m.step(J, [NAN, 0], 0.21, 0.21)
    assert m.stats.fallback_count == 2 and m.stats.rejected_bases == 1
    assert Mixer(make_config()).stats.clamped_share == 0.0


def test_residual_bound_ok_detects_violations():
    cfg = make_config(residual_gain=0.5)
    base = np.array([0.0, 0.0])
    assert residual_bound_ok(np.array([6.0, 3.0]), base, cfg)
    assert not residual_bound_ok(np.array([6.1, 3.0]), base, cfg)
    assert not residual_bound_ok(np.array([61.0, 0.0]), np.array([61.0, 0.0]), cfg)
    assert not residual_bound_ok(np.array([NAN, 0.0]), base, cfg)
    # base outside the limits: only the command clip applies
    assert residual_bound_ok(np.array([60.0, 0.0]), np.array([100.0, 0.0]), cfg)
    assert residual_bound_ok(None, base, cfg)


# ================================================================= property-based
SPECIAL = [NAN, INF, -INF, 1e300, -1e300, 0.0, -0.0, 5e-324]
values_el = st.one_of(st.floats(-1e3, 1e3), st.floats(-50, 50), st.sampled_from(SPECIAL))


@st.composite
def configs(draw):
    n = draw(st.integers(1, 12))
    joints = draw(st.lists(st.text("abcdefghij_", min_size=1, max_size=5), min_size=n, max_size=n, unique=True))
    lo = draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n))
    hi = draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n))
    cmin, cmax = np.minimum(lo, hi), np.maximum(lo, hi)
    emax = np.array(draw(st.lists(st.floats(0, 100), min_size=n, max_size=n)))
    frac = np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    eps = np.minimum(emax * frac, emax)
    return MixerConfig(
        joints=tuple(joints), residual_limit=eps, residual_limit_max=emax, command_min=cmin, command_max=cmax,
        residual_gain=draw(st.floats(0, 1)),
        residual_timeout=draw(st.one_of(st.sampled_from([0.02, 0.05, 0.1]), st.floats(1e-3, 0.3))),
        observation_timeout=draw(st.one_of(st.sampled_from([0.02, 0.05, 0.1]), st.floats(1e-3, 0.3))),
        base_timeout=draw(st.one_of(st.sampled_from([0.02, 0.05, 0.1]), st.floats(1e-3, 0.3))),
        recovery_hold_time=draw(st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.3])),
        recovery_ramp_time=draw(st.sampled_from([0.0, 0.02, 0.05, 0.5])),
        base_stale_behavior=draw(st.sampled_from(["stop", "zero", "hold", "damp"])),
        fallback_ramp_time=draw(st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.1, 1.0])),
        damp_kd=draw(st.lists(st.floats(0, 50), min_size=n, max_size=n)),
    )


@st.composite
def message(draw, joints):
    """(names, values) with a random order and, in a third of the cases, corruption."""
    names = list(draw(st.permutations(joints)))
    if draw(st.sampled_from([True, True, False])):  # clean: finite values, right names
        return names, draw(st.lists(st.floats(-2e3, 2e3), min_size=len(names), max_size=len(names)))
    kind = draw(st.sampled_from(["values", "dup", "unknown", "drop", "size", "extra"]))
    if kind == "dup" and len(names) > 1:
        names[draw(st.integers(0, len(names) - 1))] = names[0]
    elif kind == "unknown":
        names[draw(st.integers(0, len(names) - 1))] = "zz_not_a_joint"
    elif kind == "drop":
        names = names[:-1]
    elif kind == "extra":
        names = names + ["zz_extra"]
    size = len(names) + (draw(st.sampled_from([-1, 1])) if kind == "size" else 0)
    values = draw(st.lists(values_el, min_size=max(size, 0), max_size=max(size, 0)))
    return names, values


def dt_strategy():
    return st.one_of(st.sampled_from([0.0, 0.001, 0.005, 0.01]), st.floats(0.0, 0.1), st.floats(0.1, 3.0),
                     st.sampled_from([-5.0]))  # -5: the clock jumps back


def stamp_offset():
    return st.one_of(st.just(0.0), st.just(0.0), st.floats(-0.3, 0.05),
                     st.sampled_from([NAN, INF, -INF, -100.0, 100.0]))


@st.composite
def scenarios(draw):
    cfg = draw(configs())
    events = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["tick"] * 4 + ["residual", "base", "base", "check", "reconfig"]))
        if kind == "tick":  # a healthy control period: fresh residual and base at the same time
            dt = draw(st.sampled_from([0.001, 0.005, 0.01]))
            r_names = list(draw(st.permutations(cfg.joints)))
            b_names = list(draw(st.permutations(cfg.joints)))
            n = len(cfg.joints)
            events.append(("residual", dt, r_names, draw(st.lists(st.floats(-200, 200), min_size=n, max_size=n)),
                           0.0))
            events.append(("base", 0.0, b_names, draw(st.lists(st.floats(-2e3, 2e3), min_size=n, max_size=n)),
                           0.0))
            continue
        dt = draw(dt_strategy())
        if kind in ("residual", "base"):
            names, values = draw(message(cfg.joints))
            events.append((kind, dt, names, values, draw(stamp_offset())))
        elif kind == "check":
            events.append((kind, dt))
        else:  # a live change of the clamp, and sometimes of the fallback ramp time (mid-blend too)
            frac = draw(st.floats(0, 1))
            events.append((kind, dt, frac, draw(st.floats(0, 1)), draw(st.sampled_from([None, None, 0.0, 0.05, 1.0]))))
    return cfg, events


def _ordered(cfg, names, values):
    """Independent reordering by name; None when the message is not acceptable."""
    if len(names) != len(values) or len(set(names)) != len(names) or set(names) != set(cfg.joints):
        return None
    d = dict(zip(names, values))
    v = np.array([d[j] for j in cfg.joints], dtype=float)
    return v if np.all(np.isfinite(v)) else None


def _check_output(out, cfg, base_sent, residual_model, last_command, last_applied=None, resume_origin=None,
                  ramped=None):
    """Check one output; returns the applied residual of a mixed command (None in BASE_FAULT).

    ``resume_origin``: the last stale-behaviour command, which a resume blends from. ``ramped``: whether
    fallback_ramp_time was ever above 0 (a blend started then runs its course; default: it is now).
    """
    ramped = cfg.fallback_ramp_time > 0.0 if ramped is None else ramped
    assert isinstance(out.mode, Mode)
    assert 0.0 <= out.gain <= cfg.residual_gain
    if out.command is None:
        assert out.mode is Mode.BASE_FAULT
        assert cfg.base_stale_behavior == "stop" or (cfg.base_stale_behavior == "damp" and last_command is None)
        return None
    cmd = out.command
    assert cmd.shape == (len(cfg.joints),)
    assert np.all(np.isfinite(cmd))
    assert np.all(cmd >= cfg.command_min) and np.all(cmd <= cfg.command_max)
    if out.mode is Mode.BASE_FAULT:
        if cfg.base_stale_behavior == "zero":
            np.testing.assert_array_equal(cmd, np.clip(0.0, cfg.command_min, cfg.command_max))
        elif cfg.base_stale_behavior == "hold":
            held = last_command if last_command is not None else np.zeros(len(cfg.joints))
            np.testing.assert_array_equal(cmd, np.clip(held, cfg.command_min, cfg.command_max))
        np.testing.assert_array_equal(out.applied_residual, np.zeros(len(cfg.joints)))
        return None
    base = out.base
    assert base_sent is not None
    np.testing.assert_array_equal(base, base_sent)
    bound = cfg.residual_gain * cfg.residual_limit
    da = out.applied_residual
    assert np.all(np.isfinite(da)) and np.all(np.abs(da) <= bound + 1e-9), (da, bound)
    if out.mode is Mode.NOMINAL:
        assert out.gain == cfg.residual_gain
    if out.mode is Mode.FALLBACK:
        assert out.gain == 0.0
        if not ramped:
            np.testing.assert_array_equal(da, np.zeros(len(cfg.joints)))
        # A decay: the same sign as the residual applied before, never larger.
        prev = np.zeros(len(cfg.joints)) if last_applied is None else last_applied
        assert np.all(da * prev >= 0.0) and np.all(np.abs(da) <= np.abs(prev) + 1e-9), (da, prev)
    if out.gain > 0:
        assert residual_model is not None, "residual applied although none was accepted"
        np.testing.assert_allclose(da, out.gain * np.clip(residual_model, -cfg.residual_limit, cfg.residual_limit),
                                   rtol=0, atol=1e-12)
    mixed = np.clip(base + da, cfg.command_min, cfg.command_max)
    w = out.resume_weight
    assert 0.0 <= w <= 1.0
    if w > 0.0:
        # Leaving a base fault: from the last stale-behaviour command to the mix, bumpless.
        assert resume_origin is not None and cfg.base_stale_behavior != "stop" and ramped
        expected = np.clip(w * resume_origin + (1.0 - w) * mixed, cfg.command_min, cfg.command_max)
        assert np.all(np.abs(cmd - expected) <= 1e-9 * (1.0 + np.abs(expected))), (cmd, expected, w)
        return da
    np.testing.assert_allclose(cmd, mixed, rtol=0, atol=1e-12)
    assert residual_bound_ok(cmd, base, cfg)
    inside = (base >= cfg.command_min) & (base <= cfg.command_max)
    assert np.all(np.abs(cmd - base)[inside] <= bound[inside] + 1e-9)
    return da


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_mixer_invariants_hold_for_any_event_sequence(scenario):
    cfg, events = scenario
    m = Mixer(cfg)
    now = 1000.0
    last_now = None
    residual_model = None   # the last accepted residual, ordered like cfg.joints
    last_command = None
    last_applied = None     # applied residual of the last mixed command (the decay's reference)
    last_output = None      # the last command returned, whatever the mode
    resume_origin = None    # what a resume from a base fault blends from
    ramped = cfg.fallback_ramp_time > 0.0  # a blend may be running (it keeps the ramp time it started with)
    for ev in events:
        now = now + ev[1]
        jumped = last_now is not None and now < last_now
        if jumped and ev[0] not in ("residual", "reconfig") and resume_origin is not None:
            resume_origin = last_output  # a resume under way goes on from the last command
        if ev[0] == "residual":
            _, _, names, values, off = ev
            err = m.update_residual(names, values, now + off, now)
            expect_ok = _ordered(m.config, names, values) is not None and math.isfinite(now + off)
            assert (err == "") == expect_ok, (err, names, values)
            residual_model = _ordered(m.config, names, values) if expect_ok else None
            continue  # update_residual does not look at the clock
        if ev[0] == "reconfig":  # does not look at the clock either
            _, _, frac, gain, ramp = ev
            m.reconfigure(residual_limit=m.config.residual_limit_max * frac, residual_gain=gain,
                          **({} if ramp is None else {"fallback_ramp_time": ramp}))
            ramped = ramped or m.config.fallback_ramp_time > 0.0
            if last_applied is not None:  # the decay's origin is clipped to the new bound
                bound = m.config.residual_gain * m.config.residual_limit
                last_applied = np.clip(last_applied, -bound, bound)
            continue
        if jumped:
            residual_model = None
        last_now = now
        if ev[0] == "check":
            out = m.check_base(now)
            if out is not None:
                _check_output(out, m.config, None, residual_model, last_command)
                last_applied = None
                if out.command is not None:
                    last_output = out.command
            assert isinstance(m.mode, Mode)
            continue
        _, _, names, values, off = ev
        before = m.mode
        out = m.step(names, values, now + off, now)
        base_sent = _ordered(m.config, names, values)
        if base_sent is None:
            assert out.mode is Mode.BASE_FAULT
        if before is Mode.BASE_FAULT and out.mode is not Mode.BASE_FAULT:
            # a base fault outlasts a clock jump: the mix resumes from the stale-behaviour command
            resume_origin = last_output if last_command is not None else None
        last_applied = _check_output(out, m.config, base_sent, residual_model, last_command, last_applied,
                                     resume_origin, ramped)
        if out.command is not None:
            last_output = out.command
        if out.mode is not Mode.BASE_FAULT:
            last_command = out.command
        assert isinstance(m.mode, Mode) and m.mode is out.mode


@settings(max_examples=200, deadline=None)
@given(cfg=configs(), base=st.lists(st.floats(-2e3, 2e3), min_size=12, max_size=12),
       da=st.lists(st.one_of(st.floats(-1e6, 1e6), st.sampled_from([1e300, -1e300])), min_size=12, max_size=12))
def test_nominal_command_bound_property(cfg, base, da):
    """In NOMINAL, for any finite base and residual: within limits and |a - a_base| <= g eps."""
    n = len(cfg.joints)
    m = Mixer(MixerConfig(**{**cfg.__dict__, "recovery_hold_time": 0.0, "recovery_ramp_time": 0.0}))
    m.update_residual(cfg.joints, da[:n], 0.0, 0.0)
    out = m.step(cfg.joints, base[:n], 0.0, 0.0)
    assert out.mode is Mode.NOMINAL
    b = np.array(base[:n])
    assert residual_bound_ok(out.command, b, m.config)
    expected = np.clip(b + cfg.residual_gain * np.clip(da[:n], -cfg.residual_limit, cfg.residual_limit),
                       cfg.command_min, cfg.command_max)
    np.testing.assert_allclose(out.command, expected, rtol=0, atol=1e-12)
    inside = (b >= cfg.command_min) & (b <= cfg.command_max)
    assert np.all(np.abs(out.command - b)[inside] <= (cfg.residual_gain * cfg.residual_limit)[inside] + 1e-9)


# ================================================================= bumpless fallback
def decaying_mixer(ramp=0.1, residual=(10.0, 5.0), **overrides) -> Mixer:
    """NOMINAL at t=0 with ``residual`` applied, fallback_ramp_time ``ramp``."""
    m = nominal_mixer(residual=residual, **overrides)
    m.reconfigure(fallback_ramp_time=ramp)
    return m


def test_stale_residual_decays_linearly_from_the_last_applied():
    m = decaying_mixer(recovery_hold_time=0.0)
    out = m.step(J, [1.0, 1.0], 0.06, 0.06)  # 60 ms without a residual: stale
    assert out.mode is Mode.FALLBACK and out.transition and "residual stale" in out.reason
    np.testing.assert_allclose(out.applied_residual, [10.0, 5.0])  # no step at the transition
    for k in range(1, 12):
        t = 0.06 + k * 0.01
        out = m.step(J, [1.0, 1.0], t, t)
        w = max(1.0 - k * 0.01 / 0.1, 0.0)
        np.testing.assert_allclose(out.applied_residual, w * np.array([10.0, 5.0]), atol=1e-9)
        np.testing.assert_allclose(out.command, [1.0, 1.0] + w * np.array([10.0, 5.0]), atol=1e-9)
        assert out.mode is Mode.FALLBACK and out.gain == 0.0
    assert m.stats.fallback_count == 1


def test_zero_ramp_time_is_the_step_fallback():
    m = decaying_mixer(ramp=0.0)
    out = m.step(J, [1.0, 1.0], 0.06, 0.06)
    assert out.mode is Mode.FALLBACK
    np.testing.assert_array_equal(out.applied_residual, [0.0, 0.0])
    np.testing.assert_array_equal(out.command, [1.0, 1.0])


@pytest.mark.parametrize("invalid", [[NAN, 1.0], [1.0, INF], [1e300, -1e300]])
def test_an_invalid_residual_is_never_used_the_decay_starts_from_the_last_valid(invalid):
    m = decaying_mixer()
    m.update_residual(J, invalid, 0.01, 0.01)
    out = m.step(J, [0.0, 0.0], 0.01, 0.01)
    if np.all(np.isfinite(invalid)):  # huge but finite: valid, clamped to eps
        assert out.mode is Mode.NOMINAL
        np.testing.assert_allclose(out.applied_residual, [12.0, -6.0])
        return
    assert out.mode is Mode.FALLBACK and "finite" in out.reason
    np.testing.assert_allclose(out.applied_residual, [10.0, 5.0])
    out = m.step(J, [0.0, 0.0], 0.06, 0.06)
    np.testing.assert_allclose(out.applied_residual, 0.5 * np.array([10.0, 5.0]), atol=1e-9)


def test_observation_stale_decays_and_recovery_waits_for_the_decay():
    # hold 0: a healthy residual right after the fault may ramp in only once the decay is over
    m = decaying_mixer(ramp=0.2, recovery_hold_time=0.0, recovery_ramp_time=0.1)
    m.update_residual(J, [1.0, 1.0], -0.5, 0.01)  # computed from a 0.51 s old observation
    out = m.step(J, [0.0, 0.0], 0.01, 0.01)
    assert out.mode is Mode.FALLBACK and "observation stale" in out.reason
    np.testing.assert_allclose(out.applied_residual, [10.0, 5.0])
    modes = []
    for k in range(2, 40):
        t = k / 100
        out = feed(m, t, [-4.0, -2.0])  # healthy again, opposite sign
        modes.append(out.mode)
        if t < 0.21 - 1e-9:
            assert out.mode is Mode.FALLBACK and "fallback ramp" in out.reason, (t, out.reason)
            np.testing.assert_allclose(out.applied_residual, (1 - (t - 0.01) / 0.2) * np.array([10.0, 5.0]),
                                       atol=1e-9)
    assert Mode.RECOVERING in modes and modes[-1] is Mode.NOMINAL


def test_fallback_during_the_recovery_ramp_decays_from_the_ramped_value():
    m = Mixer(make_config(recovery_hold_time=0.0, recovery_ramp_time=1.0, fallback_ramp_time=0.1))
    for k in range(0, 31):
        out = feed(m, k / 100, [10.0, 5.0])
    assert out.mode is Mode.RECOVERING
    last = out.applied_residual.copy()
    np.testing.assert_allclose(last, 0.3 * np.array([10.0, 5.0]), atol=1e-9)
    out = m.step(J, [0.0, 0.0], 0.37, 0.37)  # stale
    assert out.mode is Mode.FALLBACK
    np.testing.assert_allclose(out.applied_residual, last)
    out = m.step(J, [0.0, 0.0], 0.42, 0.42)
    np.testing.assert_allclose(out.applied_residual, 0.5 * last, atol=1e-9)


def test_a_second_fault_during_the_decay_does_not_restart_it():
    m = decaying_mixer(recovery_hold_time=0.5)
    m.step(J, [0.0, 0.0], 0.06, 0.06)  # stale: decay starts at 0.06
    feed(m, 0.08, [3.0, 3.0])  # healthy (holding)
    m.update_residual(J, [NAN, 0.0], 0.09, 0.09)  # invalid: a new fallback reason
    out = m.step(J, [0.0, 0.0], 0.09, 0.09)
    assert out.mode is Mode.FALLBACK and "finite" in out.reason
    np.testing.assert_allclose(out.applied_residual, 0.7 * np.array([10.0, 5.0]), atol=1e-9)
    assert m.stats.fallback_count == 1


def test_live_reconfigure_during_the_decay_applies_the_current_bound():
    m = decaying_mixer(ramp=0.5)
    m.step(J, [0.0, 0.0], 0.06, 0.06)
    m.reconfigure(residual_limit=[4.0, 6.0], residual_gain=0.5)  # g * eps = [2, 3]
    out = m.step(J, [0.0, 0.0], 0.06, 0.06)
    np.testing.assert_allclose(out.applied_residual, [2.0, 3.0])
    assert residual_bound_ok(out.command, out.base, m.config)
    m.reconfigure(residual_limit=[12.0, 6.0], residual_gain=1.0)  # raised again: the decay does not grow back
    out = m.step(J, [0.0, 0.0], 0.31, 0.31)
    np.testing.assert_allclose(out.applied_residual, 0.5 * np.array([2.0, 3.0]), atol=1e-9)
    m.reconfigure(residual_gain=0.0)
    out = m.step(J, [0.0, 0.0], 0.32, 0.32)
    np.testing.assert_array_equal(out.applied_residual, [0.0, 0.0])


def test_clock_jump_back_during_the_decay_goes_on_from_where_it_was():
    m = decaying_mixer(ramp=0.2)
    m.step(J, [0.0, 0.0], 0.06, 0.06)
    out = m.step(J, [0.0, 0.0], 0.16, 0.16)
    np.testing.assert_allclose(out.applied_residual, [5.0, 2.5], atol=1e-9)
    out = m.step(J, [0.0, 0.0], 0.0, 0.0)  # sim reset
    assert out.mode is Mode.FALLBACK and "clock jumped back" in out.reason
    np.testing.assert_allclose(out.applied_residual, [5.0, 2.5], atol=1e-9)
    out = m.step(J, [0.0, 0.0], 0.1, 0.1)
    np.testing.assert_allclose(out.applied_residual, [2.5, 1.25], atol=1e-9)
    out = m.step(J, [0.0, 0.0], 0.21, 0.21)
    np.testing.assert_array_equal(out.applied_residual, [0.0, 0.0])


def test_a_base_fault_ends_the_decay():
    m = decaying_mixer(ramp=0.5)
    m.step(J, [0.0, 0.0], 0.06, 0.06)
    assert m.step(J, [NAN, 0.0], 0.07, 0.07).mode is Mode.BASE_FAULT
    out = m.step(J, [1.0, 1.0], 0.08, 0.08)  # the base is back: nothing added to it until the recovery
    assert out.mode is Mode.FALLBACK
    np.testing.assert_array_equal(out.applied_residual, [0.0, 0.0])


@st.composite
def transition_scenarios(draw):
    """Draw a constant residual per run, and the events that make the mixer change mode."""
    cfg = draw(configs())
    n = len(cfg.joints)
    residual = draw(st.lists(st.floats(-200, 200), min_size=n, max_size=n))
    events = []
    for _ in range(draw(st.integers(5, 80))):
        dt = draw(st.sampled_from([0.001, 0.002, 0.005, 0.01, 0.02]))
        kind = draw(st.sampled_from(["tick"] * 6 + ["stale"] * 3 + ["obs_stale", "invalid", "base_fault",
                                                                     "check", "reconfig", "jump"]))
        events.append((kind, dt, draw(st.floats(0, 1)), draw(st.floats(0, 1))))
    return cfg, residual, events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transition_scenarios())
def test_transitions_are_bumpless(scenario):
    """The applied residual changes no faster than the ramps allow, through every transition.

    With a constant residual, the applied residual changes between two commands dt apart by at most
    g eps dt / fallback_ramp_time in FALLBACK and g eps dt / recovery_ramp_time while ramping in,
    through every transition (fallback during the recovery ramp, a second fault during the decay,
    recovery after it); a live reconfiguration, a base fault or a clock jump restarts the comparison.
    """
    cfg, residual, events = scenario
    m = Mixer(cfg)
    n = len(cfg.joints)
    zeros = [0.0] * n
    now, prev = 10.0, None  # prev: (time, applied residual) of the last mixed command
    for kind, dt, x, y in events:
        now += dt
        if kind == "jump":
            now -= 1.0
            prev = None
        if kind == "reconfig":
            m.reconfigure(residual_limit=m.config.residual_limit_max * x, residual_gain=y)
            prev = None
            continue
        if kind == "check":
            if m.check_base(now) is not None:
                prev = None
            continue
        if kind == "tick":
            assert m.update_residual(cfg.joints, residual, now, now) == ""
        elif kind == "obs_stale":
            m.update_residual(cfg.joints, residual, now - 1.0, now)
        elif kind == "invalid":
            m.update_residual(cfg.joints, [NAN] * n, now, now)
        base = [NAN] * n if kind == "base_fault" else zeros
        out = m.step(cfg.joints, base, now, now)
        if out.mode is Mode.BASE_FAULT:
            prev = None
            continue
        c = m.config
        bound = c.residual_gain * c.residual_limit
        da = out.applied_residual
        assert np.all(np.isfinite(out.command))
        assert np.all(out.command >= c.command_min) and np.all(out.command <= c.command_max)
        assert np.all(np.abs(da) <= bound + 1e-9)
        if prev is not None:
            step = np.abs(da - prev[1])
            elapsed = now - prev[0]
            # The ramps that can act between the two commands: the decay while in (or leaving)
            # FALLBACK, the recovery ramp while in (or leaving) RECOVERING.
            ramps = []
            if Mode.FALLBACK in (prev[2], out.mode):
                ramps.append(c.fallback_ramp_time)
            if {prev[2], out.mode} & {Mode.RECOVERING, Mode.NOMINAL}:
                ramps.append(c.recovery_ramp_time)
            if ramps and min(ramps) > 0:
                assert np.all(step <= bound * elapsed / min(ramps) + 1e-9), (prev[2], out.mode, step, elapsed)
        prev = (now, da.copy(), out.mode)


# ================================================================= damp safe stop
def gravity(q):
    return np.array([10.0 * math.cos(q[0]), 3.0 * math.cos(q[0] + q[1])])


def damp_mixer(ramp=0.1, **overrides) -> Mixer:
    m = Mixer(make_config(recovery_hold_time=0.0, recovery_ramp_time=0.0, base_stale_behavior="damp",
                          damp_kd=[6.0, 4.0], fallback_ramp_time=ramp, **overrides), gravity=gravity)
    assert m.update_residual(J, [2.0, 1.0], 0.0, 0.0) == ""
    assert m.step(J, [20.0, -10.0], 0.0, 0.0).mode is Mode.NOMINAL
    return m


def test_damp_blends_from_the_last_command_to_damping_plus_gravity():
    m = damp_mixer()
    assert m.update_state(J, [0.0, 0.0], [1.0, -2.0], 0.05) == ""
    last = np.array([22.0, -9.0])
    target = np.array([-6.0 + 10.0, 8.0 + 3.0])
    out = m.check_base(0.06)  # base_timeout 0.05 passed
    assert out.mode is Mode.BASE_FAULT and out.transition
    np.testing.assert_allclose(out.command, last)  # no torque step
    for k in range(1, 12):
        t = 0.06 + k * 0.01
        assert m.update_state(J, [0.0, 0.0], [1.0, -2.0], t) == ""
        out = m.check_base(t)
        w = max(1.0 - k * 0.01 / 0.1, 0.0)
        np.testing.assert_allclose(out.command, w * last + (1 - w) * target, atol=1e-9)
    np.testing.assert_allclose(m.damp_target(0.17), target)


def test_damp_follows_the_state_and_is_clipped():
    m = damp_mixer(ramp=0.0, command_max=[60.0, 5.0])
    m.update_state(("elbow", "shoulder"), [0.5, 0.2], [0.0, 3.0], 0.1)
    out = m.check_base(0.1)
    q = np.array([0.2, 0.5])
    expected = np.clip(-np.array([6.0, 4.0]) * [3.0, 0.0] + gravity(q), [-60, -30], [60, 5])
    np.testing.assert_allclose(out.command, expected)


def test_damp_with_a_stale_state_holds_gravity_only_and_without_a_state_zero():
    m = damp_mixer(ramp=0.0)
    m.update_state(J, [0.3, 0.1], [2.0, 2.0], 0.0)
    out = m.check_base(0.2)  # the state is 0.2 s old: no velocity to damp
    np.testing.assert_allclose(out.command, gravity([0.3, 0.1]))
    assert "joint state 0.200 s old" in out.reason
    fresh = damp_mixer(ramp=0.0, command_min=[1.0, -30.0])
    out = fresh.check_base(0.2)
    np.testing.assert_allclose(out.command, [1.0, 0.0])  # never a state: clip(0)
    assert "no joint state received" in out.reason


def test_damp_sends_nothing_before_the_first_command():
    """``damp`` replaces the command a sink would hold; before any, there is none to replace."""
    m = Mixer(make_config(base_stale_behavior="damp", damp_kd=[6.0, 4.0]), gravity=gravity)
    assert m.check_base(0.0) is None
    m.update_state(J, [0.3, 0.1], [1.0, 1.0], 0.05)
    out = m.check_base(0.06)
    assert out.mode is Mode.BASE_FAULT and out.command is None
    m.step(J, [1.0, 1.0], 0.07, 0.07)  # the first command
    m.update_state(J, [0.3, 0.1], [1.0, 1.0], 0.2)
    assert m.check_base(0.2).command is not None


def test_damp_without_gravity_is_damping_alone():
    m = Mixer(make_config(base_stale_behavior="damp", damp_kd=[6.0, 4.0]))
    m.step(J, [0.0, 0.0], 0.0, 0.0)
    m.update_state(J, [0.3, 0.1], [1.0, 1.0], 0.03)
    out = m.check_base(0.06)
    np.testing.assert_allclose(out.command, [-6.0, -4.0])


@pytest.mark.parametrize("q, qd, fragment", [([NAN, 0.0], [0.0, 0.0], "position"),
                                             ([0.0, 0.0], [0.0, INF], "velocity"),
                                             ([0.0], [0.0], "position")])
def test_damp_refuses_an_invalid_state(q, qd, fragment):
    m = damp_mixer(ramp=0.0)
    names = J if len(q) == 2 else ("shoulder",)
    err = m.update_state(names, q, qd, 0.0)
    assert fragment in err and "expected" in err
    assert m.state_age(0.0) is None


def test_damp_ends_when_the_base_returns_and_restarts_from_the_last_command():
    m = damp_mixer(ramp=0.1)
    m.update_state(J, [0.0, 0.0], [0.0, 0.0], 0.06)
    stale = m.check_base(0.06).command
    out = feed(m, 0.07, [2.0, 1.0], base=[5.0, 5.0])
    assert out.mode is not Mode.BASE_FAULT
    assert out.resume_weight == 1.0  # the resume blend starts at the last stale command
    np.testing.assert_allclose(out.command, stale)
    out = feed(m, 0.12, [2.0, 1.0], base=[5.0, 5.0])
    assert out.resume_weight == pytest.approx(0.5)
    np.testing.assert_allclose(out.command, 0.5 * stale + 0.5 * np.array([7.0, 6.0]))
    out = feed(m, 0.17, [2.0, 1.0], base=[5.0, 5.0])
    assert out.resume_weight == 0.0
    np.testing.assert_allclose(out.command, [7.0, 6.0])
    out = m.check_base(0.3)
    np.testing.assert_allclose(out.command, [7.0, 6.0])  # the new blend starts from the last command


# ----------------------------------------------------------------- bumpless resume
@pytest.mark.parametrize("behavior", ["zero", "hold", "damp"])
def test_resume_after_a_base_fault_blends_from_the_last_stale_command(behavior):
    """The base returns: the command goes from the last stale-behaviour command to the mix linearly."""
    m = Mixer(make_config(base_stale_behavior=behavior, fallback_ramp_time=0.1, recovery_hold_time=0.0,
                          recovery_ramp_time=0.0), gravity=gravity)
    feed(m, 0.0, [2.0, 1.0], base=[20.0, -10.0])
    m.update_state(J, [0.3, -0.2], [1.0, -2.0], 0.05)
    stale = None
    for k in range(6, 20):  # 0.06 .. 0.19 s: base stale, the watchdog answers
        stale = m.check_base(k / 100).command
    assert m.mode is Mode.BASE_FAULT and stale is not None
    base = np.array([-15.0, 12.0])
    previous = stale
    for k in range(20, 35):
        t = k / 100
        out = feed(m, t, [2.0, 1.0], base=base)
        w = max(0.0, 1.0 - (t - 0.20) / 0.1)
        assert out.resume_weight == pytest.approx(w, abs=1e-9)
        mixed = base + out.applied_residual
        np.testing.assert_allclose(out.command, w * stale + (1.0 - w) * mixed, atol=1e-9)
        # Bumpless: no step larger than the blend's share of one period.
        assert np.all(np.abs(out.command - previous) <= np.abs(stale - mixed) * 0.01 / 0.1 + np.abs(
            out.applied_residual) + 1e-9)
        previous = out.command
    np.testing.assert_allclose(out.command, base + out.applied_residual)
    assert residual_bound_ok(out.command, base, m.config)


def test_resume_after_stop_or_without_a_ramp_is_the_mix_at_once():
    for behavior, ramp in (("stop", 0.1), ("damp", 0.0), ("zero", 0.0)):
        m = Mixer(make_config(base_stale_behavior=behavior, fallback_ramp_time=ramp, recovery_hold_time=0.0,
                              recovery_ramp_time=0.0), gravity=gravity)
        feed(m, 0.0, [0.0, 0.0], base=[20.0, -10.0])
        m.check_base(0.1)
        assert m.mode is Mode.BASE_FAULT
        out = feed(m, 0.11, [0.0, 0.0], base=[-15.0, 12.0])
        assert out.resume_weight == 0.0, behavior
        np.testing.assert_allclose(out.command, [-15.0, 12.0])


def test_a_base_fault_during_the_resume_damps_from_the_blended_command():
    m = damp_mixer(ramp=0.1)
    m.update_state(J, [0.0, 0.0], [0.0, 0.0], 0.06)
    m.check_base(0.06)
    blended = feed(m, 0.08, [2.0, 1.0], base=[-30.0, 20.0]).command
    out = m.step(J, [NAN, 0.0], 0.09, 0.09)  # a bad base action: base_fault again
    assert out.mode is Mode.BASE_FAULT and out.resume_weight == 0.0
    np.testing.assert_allclose(out.command, blended)  # the stop blend starts where the resume was
    assert m.mode is Mode.BASE_FAULT


def test_a_clock_jump_during_the_resume_goes_on_from_the_last_command():
    m = damp_mixer(ramp=0.1)
    m.update_state(J, [0.0, 0.0], [0.0, 0.0], 0.06)
    m.check_base(0.06)
    last = feed(m, 0.08, [2.0, 1.0], base=[-30.0, 20.0]).command
    out = m.step(J, [-30.0, 20.0], 0.0, 0.0)  # the sim was reset
    assert out.resume_weight == 1.0
    np.testing.assert_allclose(out.command, last)
    out = m.step(J, [-30.0, 20.0], 0.1, 0.1)
    assert out.resume_weight == 0.0
    np.testing.assert_allclose(out.command, [-30.0, 20.0])


def test_gravity_model_from_params():
    from support.planar_arm import ArmModel
    from residual_control.core.mixer import gravity_model, mixer_from_params
    from residual_control.robot.nominal import nominal_model

    params = {"joints": ["shoulder", "elbow"], "robot": "planar2", "model.payload_mass": 0.2, "damp_gravity": True}
    model = nominal_model(params)
    g = gravity_model(model, 2)
    np.testing.assert_allclose(g(np.array([0.3, 1.2])), ArmModel().gravity_torque([0.3, 1.2]), atol=1e-9)
    with pytest.raises(ConfigError, match="expected 3 joints"):
        gravity_model(model, 3)
    with pytest.raises(ConfigError, match="damp_gravity: expected a nominal model"):
        gravity_model(None, 2)
    with pytest.raises(ConfigError, match="damp_gravity: expected a nominal model"):
        mixer_from_params({**params, "residual_limit": [20.0, 8.0], "residual_limit_max": [25.0, 12.0],
                           "command_min": [-60.0, -30.0], "command_max": [60.0, 30.0], "damp_kd": [6.0, 4.0]})


@settings(max_examples=150, deadline=None)
@given(cfg=configs(), q=st.lists(values_el, min_size=12, max_size=12), qd=st.lists(values_el, min_size=12, max_size=12),
       dts=st.lists(st.sampled_from([0.001, 0.01, 0.05, 0.2]), min_size=1, max_size=20))
def test_damp_commands_are_finite_within_limits_and_ramped(cfg, q, qd, dts):
    n = len(cfg.joints)
    m = Mixer(MixerConfig(**{**cfg.__dict__, "base_stale_behavior": "damp"}),
              gravity=lambda x: np.full(len(x), 1e3) * np.sin(x))
    first = m.step(cfg.joints, [0.0] * n, 0.0, 0.0).command
    now, prev = 0.0, None
    for dt in dts:
        now += dt
        m.update_state(cfg.joints, q[:n], qd[:n], now)
        out = m.check_base(now + cfg.base_timeout + 1e-3)
        now += cfg.base_timeout + 1e-3
        assert out.mode is Mode.BASE_FAULT
        c = out.command
        assert np.all(np.isfinite(c)) and np.all(c >= cfg.command_min) and np.all(c <= cfg.command_max)
        if prev is None and cfg.fallback_ramp_time > 0:  # the safe stop starts from the last command
            np.testing.assert_allclose(c, first, rtol=0, atol=1e-9)
        prev = c


def test_decay_never_grows_when_the_clock_jumps_back_after_the_gain_was_lowered():
    """Found by hypothesis: a residual at gain 1, the gain lowered to 0.5 while nominal, two clock jumps back.

    The decay's origin must be the residual as bounded by the current g * eps (0.5), so rescaling it at
    the second jump cannot make it grow (it gave 0.3 after 0.15).
    """
    cfg = MixerConfig(joints=("a",), residual_limit=[1.0], residual_limit_max=[1.0], command_min=[-5.0],
                      command_max=[5.0], residual_timeout=0.02, observation_timeout=0.02, base_timeout=0.02,
                      recovery_hold_time=0.0, recovery_ramp_time=0.0, fallback_ramp_time=0.01)
    m = Mixer(cfg)
    m.update_residual(["a"], [1.0], 1000.001, 1000.001)
    assert m.step(["a"], [0.0], 1000.001, 1000.001).applied_residual[0] == 1.0
    m.reconfigure(residual_gain=0.5)
    now, applied = 995.002, []
    for _ in range(8):
        m.update_residual(["a"], [0.0], now, now)
        applied.append(m.step(["a"], [0.0], now, now).applied_residual[0])
        now += 0.001
    now -= 5.0  # the second jump back, mid-decay
    m.update_residual(["a"], [0.0], now, now)
    applied.append(m.step(["a"], [0.0], now, now).applied_residual[0])
    assert applied[0] <= 0.5 + 1e-12
    assert all(b <= a + 1e-12 for a, b in zip(applied, applied[1:])), applied


def test_no_resume_blend_before_the_first_base_action_ever_mixed():
    """At start-up the watchdog's zero stands in for a base controller not started yet: its first action applies."""
    m = Mixer(make_config(base_stale_behavior="zero", fallback_ramp_time=0.1))
    assert m.check_base(0.0) is None
    assert m.check_base(0.1).mode is Mode.BASE_FAULT  # nothing within base_timeout of the start
    out = m.step(J, [20.0, -10.0], 0.11, 0.11)
    assert out.resume_weight == 0.0
    np.testing.assert_allclose(out.command, [20.0, -10.0])


# ================================================================= live changes mid-blend, clock jumps (review)
@settings(max_examples=100, deadline=None)
@given(changes=st.lists(st.tuples(st.floats(0.0, 0.05), st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.5, 1.0])),
                        min_size=1, max_size=12))
def test_a_ramp_time_changed_during_the_decay_never_brings_the_residual_back(changes):
    """The decaying residual only shrinks, whatever fallback_ramp_time is set to on the way."""
    m = decaying_mixer(ramp=0.1, recovery_hold_time=10.0)
    t = 0.0
    m.update_residual(J, [NAN, 0.0], t, t)  # refused: the fallback starts here
    previous = np.abs(m.step(J, [1.0, 1.0], t, t).applied_residual)
    np.testing.assert_allclose(previous, [10.0, 5.0])  # no step at the transition
    for dt, ramp in changes:
        m.reconfigure(fallback_ramp_time=ramp)
        t += dt
        out = m.step(J, [1.0, 1.0], t, t)
        assert out.mode is Mode.FALLBACK
        da = np.abs(out.applied_residual)
        assert np.all(da <= previous + 1e-12), (ramp, da, previous)
        # the decay started with 0.1 s and keeps it: a longer or shorter ramp time is for the next one
        np.testing.assert_allclose(da, np.array([10.0, 5.0]) * max(1.0 - t / 0.1, 0.0), atol=1e-9)
        previous = da


def test_a_ramp_time_lowered_during_damp_or_the_resume_does_not_cut_the_blend_short():
    m = damp_mixer(ramp=0.1)
    m.update_state(J, [0.0, 0.0], [1.0, -2.0], 0.05)
    last = np.array([22.0, -9.0])
    target = np.array([-6.0 + 10.0, 8.0 + 3.0])
    m.check_base(0.06)
    m.update_state(J, [0.0, 0.0], [1.0, -2.0], 0.07)
    before = m.check_base(0.07).command
    m.reconfigure(fallback_ramp_time=0.0)
    m.update_state(J, [0.0, 0.0], [1.0, -2.0], 0.071)
    after = m.check_base(0.071).command
    np.testing.assert_allclose(after, 0.89 * last + 0.11 * target, atol=1e-9)  # still the 0.1 s blend
    assert np.all(np.abs(after - before) <= np.abs(last - target) * 0.001 / 0.1 + 1e-9)
    # the resume that follows is a new blend: it takes the ramp time now in force (0: the mix at once)
    out = feed(m, 0.2, [2.0, 1.0], base=[20.0, -10.0])
    assert out.resume_weight == 0.0


def test_a_recovery_ramp_time_changed_mid_ramp_keeps_the_gain_continuous():
    m = Mixer(make_config(recovery_hold_time=0.0, recovery_ramp_time=10.0))
    feed(m, 0.0, [1.0, 1.0])  # healthy: the ramp starts here, 10 s
    out = feed(m, 1.0, [1.0, 1.0])
    assert out.mode is Mode.RECOVERING and out.gain == pytest.approx(0.1)
    m.reconfigure(recovery_ramp_time=1.0)
    out = feed(m, 1.001, [1.0, 1.0])
    assert out.mode is Mode.RECOVERING and out.gain == pytest.approx(0.1001)  # was 1.0 at once
    m.reconfigure(recovery_ramp_time=0.0)
    assert feed(m, 1.002, [1.0, 1.0]).gain == pytest.approx(0.1002)
    assert feed(m, 10.0, [1.0, 1.0]).mode is Mode.NOMINAL
    # the next ramp takes the ramp time in force then (0: at once)
    m.update_residual(J, [NAN, 0.0], 10.01, 10.01)
    assert m.step(J, [0.0, 0.0], 10.01, 10.01).mode is Mode.FALLBACK
    assert feed(m, 10.02, [1.0, 1.0]).mode is Mode.NOMINAL


@pytest.mark.parametrize("behavior", ["zero", "hold", "damp"])
def test_a_clock_jump_during_a_base_fault_still_resumes_the_mix_with_its_ramp(behavior):
    """A sim reset while the base is stale: the base fault lasts; the fresh base blends in from the stale command."""
    m = Mixer(make_config(base_stale_behavior=behavior, fallback_ramp_time=0.5, damp_kd=[1.0, 1.0]))
    m.step(J, [5.0, 5.0], 100.0, 100.0)
    m.update_state(J, [0.0, 0.0], [3.0, 3.0], 100.0)
    for t in (100.06, 100.3, 100.7):
        stale = m.check_base(t)
    assert stale.mode is Mode.BASE_FAULT
    out = m.step(J, [5.0, 5.0], 1.0, 1.0)  # the clock jumped back to 1.0; a fresh base action
    assert out.mode is Mode.FALLBACK and out.transition
    assert out.resume_weight == pytest.approx(1.0)
    np.testing.assert_allclose(out.command, stale.command)  # no step: the blend starts from the stale command
    half = m.step(J, [5.0, 5.0], 1.25, 1.25)
    np.testing.assert_allclose(half.command, 0.5 * stale.command + 0.5 * np.array([5.0, 5.0]))


def test_a_mode_change_check_base_finds_on_a_clock_jump_is_reported_by_the_next_output():
    m = nominal_mixer(t=100.0)
    assert m.check_base(91.0) is None and m.mode is Mode.FALLBACK  # the watchdog saw the jump first
    out = m.step(J, [0.0, 0.0], 91.01, 91.01)
    assert out.mode is Mode.FALLBACK and out.transition and "clock jumped back" in out.reason
    assert not m.step(J, [0.0, 0.0], 91.02, 91.02).transition  # reported once
    # and in the step that meets the jump itself
    m = nominal_mixer(t=100.0)
    out = m.step(J, [0.0, 0.0], 91.0, 91.0)
    assert out.mode is Mode.FALLBACK and out.transition


def test_damp_fades_its_damping_out_when_the_joint_states_stop():
    m = Mixer(make_config(base_stale_behavior="damp", damp_kd=[10.0, 10.0], fallback_ramp_time=0.1))
    m.step(J, [0.0, 0.0], 0.0, 0.0)
    for k in range(16):  # the base stopped at 0; joint states go on until 0.25 s
        t = 0.1 + 0.01 * k
        m.update_state(J, [0.0, 0.0], [0.8, -0.8], t)
        out = m.check_base(t)
    np.testing.assert_allclose(out.command, [-8.0, 8.0])
    previous = out.command
    for k in range(1, 30):  # no more joint states from 0.25 s: stale after 0.30 s
        t = 0.25 + 0.001 * k * 10
        out = m.check_base(t)
        assert np.all(np.abs(out.command - previous) <= 8.0 * 0.01 / 0.1 + 1e-9), (t, out.command, previous)
        previous = out.command
    np.testing.assert_allclose(out.command, [0.0, 0.0])  # the damping gone: gravity alone (none here)


def test_a_base_action_with_a_non_finite_stamp_says_so():
    m = nominal_mixer()
    out = m.step(J, [0.0, 0.0], NAN, 0.01)
    assert out.mode is Mode.BASE_FAULT and "expected a finite stamp, found nan" in out.reason
