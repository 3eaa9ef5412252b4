"""core.envelope: the training envelope of a model's observations and its debounced run-time check."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from residual_control.core.envelope import (
    DEBOUNCE_TOLERANCE, DEFAULT_MARGIN, METADATA_KEY, MIN_HALF_WIDTH, Envelope, EnvelopeMonitor, compute_envelope,
    envelope_from_metadata,
)
from residual_control.core.errors import ModelError

NAMES = ("e/a", "qd/a", "perception/m")


def box(low=(-1.0, -2.0, 0.0), high=(1.0, 2.0, 3.0)) -> Envelope:
    return Envelope(NAMES, np.array(low), np.array(high))


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.just(3)), elements=finite),
       st.floats(0.0, 1.0))
def test_every_training_observation_is_inside_its_envelope(obs, margin):
    env = compute_envelope(obs, NAMES, margin)
    assert env.n_samples == len(obs)
    mon = EnvelopeMonitor(env, debounce=0.0)
    for i, row in enumerate(obs):
        check = mon.update(row, now=0.01 * i)
        assert not check.outside and not check.tripped, check.message
    # The margin: the bounds are the data range widened by margin * range on both sides (or the minimum width).
    lo, hi = obs.min(0), obs.max(0)
    np.testing.assert_allclose(env.low, np.minimum(lo - margin * (hi - lo), (lo + hi) / 2 - MIN_HALF_WIDTH))
    np.testing.assert_allclose(env.high, np.maximum(hi + margin * (hi - lo), (lo + hi) / 2 + MIN_HALF_WIDTH))


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2), st.floats(1e-3, 1e3), st.sampled_from([-1, 1]))
def test_a_point_outside_names_the_feature_and_the_distance(feature, distance, side):
    env = box()
    obs = (env.low + env.high) / 2
    obs[feature] = (env.high[feature] + distance) if side > 0 else (env.low[feature] - distance)
    check = EnvelopeMonitor(env, debounce=0.0).update(obs, 5.0)
    assert check.outside and check.tripped
    assert check.feature == NAMES[feature]
    assert check.excess == pytest.approx(distance, rel=1e-9)
    assert check.value == obs[feature]
    assert NAMES[feature] in check.message and "out_of_envelope" in check.message
    assert ("above" if side > 0 else "below") in check.message


def test_the_worst_feature_is_the_largest_excess_relative_to_its_range():
    env = box()  # spans 2, 4, 3
    obs = np.array([1.5, 3.5, 1.0])  # excess 0.5 (25 % of 2) and 1.5 (37.5 % of 4)
    check = EnvelopeMonitor(env, 0.0).update(obs, 0.0)
    assert check.feature == "qd/a" and check.excess == pytest.approx(1.5)


def test_boundaries_are_inside():
    env = box()
    mon = EnvelopeMonitor(env, 0.0)
    assert not mon.update(env.low, 0.0).outside
    assert not mon.update(env.high, 0.1).outside


@settings(max_examples=80, deadline=None)
@given(st.floats(0.0, 2.0), st.lists(st.floats(1e-4, 0.3), min_size=1, max_size=30))
def test_debounce_trips_only_after_the_observation_stayed_outside_that_long(debounce, steps):
    env = box()
    out = np.array([5.0, 0.0, 1.0])
    mon = EnvelopeMonitor(env, debounce)
    t = 10.0
    first = t
    check = mon.update(out, t)
    for dt in steps:
        assert check.outside
        assert check.tripped == (t - first >= debounce - DEBOUNCE_TOLERANCE)
        assert check.outside_for == pytest.approx(t - first)
        t += dt
        check = mon.update(out, t)
    assert check.tripped == (t - first >= debounce - DEBOUNCE_TOLERANCE)
    assert mon.trips == int(check.tripped)


def test_recovery_one_observation_inside_clears_and_a_new_excursion_debounces_again():
    env = box()
    mon = EnvelopeMonitor(env, 0.1)
    out, inside = np.array([0.0, 9.0, 1.0]), np.array([0.0, 0.0, 1.0])
    assert not mon.update(out, 0.0).tripped
    assert mon.update(out, 0.1).tripped
    assert mon.update(out, 0.3).tripped
    back = mon.update(inside, 0.31)
    assert not back.outside and not back.tripped
    assert not mon.update(out, 0.32).tripped  # debounced again from 0.32
    assert not mon.update(out, 0.40).tripped
    assert mon.update(out, 0.43).tripped
    assert mon.trips == 2


def test_time_going_backwards_restarts_the_debounce():
    mon = EnvelopeMonitor(box(), 0.1)
    out = np.array([0.0, 9.0, 1.0])
    mon.update(out, 5.0)
    assert not mon.update(out, 1.0).tripped  # clock jumped back: the excursion starts again at 1.0
    assert mon.update(out, 1.1).tripped


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_observation_is_outside_with_infinite_excess(bad):
    mon = EnvelopeMonitor(box(), 0.0)
    obs = np.array([0.0, 0.0, bad])
    check = mon.update(obs, 0.0)
    assert check.outside and check.tripped
    assert check.feature == "perception/m" and check.excess == math.inf
    assert "perception/m" in check.message


def test_monitor_rejects_a_wrong_size_and_a_bad_debounce():
    mon = EnvelopeMonitor(box(), 0.1)
    with pytest.raises(ValueError, match="expected 3 observation values, found 2"):
        mon.update([0.0, 0.0], 0.0)
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="debounce"):
            EnvelopeMonitor(box(), bad)


def test_widened_adds_a_fraction_of_each_range():
    env = box().widened(0.5)
    np.testing.assert_allclose(env.low, [-2.0, -4.0, -1.5])
    np.testing.assert_allclose(env.high, [2.0, 4.0, 4.5])
    assert box().widened(0.0).low.tolist() == box().low.tolist()
    with pytest.raises(ValueError, match="margin"):
        box().widened(-1.0)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.just(3)), elements=finite))
def test_metadata_round_trip(obs):
    env = compute_envelope(obs, NAMES)
    back = envelope_from_metadata({METADATA_KEY: env.to_json()}, NAMES)
    assert back.names == env.names
    np.testing.assert_array_equal(back.low, env.low)
    np.testing.assert_array_equal(back.high, env.high)
    assert back.margin == DEFAULT_MARGIN and back.n_samples == len(obs)


def test_metadata_without_envelope_is_none():
    assert envelope_from_metadata({"joint_names": "[]"}, NAMES) is None


@pytest.mark.parametrize("text, match", [
    ("not json", "expected JSON"),
    (json.dumps([1, 2]), "expected an object with 'names', 'low', 'high'"),
    (json.dumps({"names": ["e/a"], "low": [0.0]}), "expected an object"),
    (json.dumps({"names": list(NAMES), "low": [0, 0, "x"], "high": [1, 1, 1]}), "'low' as a list of numbers"),
    (json.dumps({"names": list(NAMES), "low": [0, 0], "high": [1, 1, 1]}), "expected 3 low and high bounds"),
    (json.dumps({"names": list(NAMES), "low": [0, 2, 0], "high": [1, 1, 1]}), r"low >= high for \['qd/a'\]"),
    (json.dumps({"names": list(NAMES), "low": [0, 0, 0], "high": [1, 1, 1e999]}), "finite bounds"),
    (json.dumps({"names": ["x", "y", "z"], "low": [0, 0, 0], "high": [1, 1, 1]}), "expected the features"),
    (json.dumps({"names": list(NAMES), "low": [0, 0, 0], "high": [1, 1, 1], "margin": None}),
     "expected 'margin' as a number, found None"),
    (json.dumps({"names": list(NAMES), "low": [0, 0, 0], "high": [1, 1, 1], "n_samples": "many"}),
     "expected 'n_samples' as an integer, found 'many'"),
])
def test_malformed_metadata_is_refused_with_what_was_expected(text, match):
    with pytest.raises(ModelError, match=match):
        envelope_from_metadata({METADATA_KEY: text}, NAMES, "m.onnx")


@pytest.mark.parametrize("obs, match", [
    (np.zeros((0, 3)), r"shape \[n >= 1, 3\], found \[0, 3\]"),
    (np.zeros((4, 2)), r"found \[4, 2\]"),
    (np.array([[0.0, math.nan, 0.0]]), "finite observations"),
])
def test_compute_envelope_refuses_bad_data(obs, match):
    with pytest.raises(ValueError, match=match):
        compute_envelope(obs, NAMES)


def test_evaluation_runs_the_model_behind_the_envelope_check(tmp_path):
    """training.evaluate.RuntimePolicy: zero residual while tripped, counts trips and outside steps."""
    from types import SimpleNamespace

    from residual_control.core.observation import default_observation_names
    from residual_control.harness.synthetic_models import constant_model
    from residual_control.training.evaluate import RuntimePolicy

    joints, features = ("shoulder", "elbow"), ("payload_mass",)
    obs = default_observation_names(joints, features)
    low, high = [-100.0] * len(obs), [100.0] * len(obs)
    i = obs.index("perception/payload_mass")
    low[i], high[i] = 0.0, 3.0
    meta = json.dumps({"names": list(obs), "low": low, "high": high})
    path = constant_model(str(tmp_path / "m.onnx"), joints, obs, [20.0, 8.0], (1.0, 2.0),
                          extra_metadata={METADATA_KEY: meta})
    policy = RuntimePolicy(path, debounce=0.05)
    z = np.zeros(2)
    outputs = []
    for k, m in enumerate([1.0] * 3 + [7.0] * 10 + [1.0] * 2):
        env = SimpleNamespace(q_ref=z, qd_ref=z, perception=np.array([m]), perception_time=k * 0.01, q_meas=z,
                              qd_meas=z, a_base=z, time=k * 0.01, joints=joints)
        outputs.append(policy(env))
    # Outside from step 3; tripped once 0.05 s (5 periods) have passed: steps 8..12.
    assert [bool(np.any(o)) for o in outputs] == [True] * 8 + [False] * 5 + [True] * 2
    stats = policy.stats
    assert stats["outside_steps"] == 10 and stats["tripped_steps"] == 5 and stats["trips"] == 1
    assert stats["worst"]["feature"] == "perception/payload_mass" and stats["worst"]["excess"] == pytest.approx(4.0)
    assert outputs[0] == pytest.approx([1.0, 2.0])


def test_loaded_policy_checks_the_envelope_with_debounce_margin_and_switch(tmp_path):
    """core.step.LoadedPolicy: what the policy step runs (no ROS graph needed)."""
    from residual_control.core.observation import default_observation_names
    from residual_control.core.policy import PolicyExpectations
    from residual_control.core.step import LoadedPolicy, Skip
    from residual_control.harness.synthetic_models import constant_model

    joints, features = ("shoulder", "elbow"), ("payload_mass",)
    obs = default_observation_names(joints, features)
    low, high = [-100.0] * len(obs), [100.0] * len(obs)
    i = obs.index("qd/shoulder")
    low[i], high[i] = -1.0, 1.0
    meta = json.dumps({"names": list(obs), "low": low, "high": high})
    expect = PolicyExpectations(joints, [20.0, 8.0], 100.0, features)
    path = constant_model(str(tmp_path / "m.onnx"), joints, obs, [20.0, 8.0], (3.0, -1.5),
                          extra_metadata={METADATA_KEY: meta})
    policy = LoadedPolicy(path, "", expect)
    policy.configure_envelope(True, 0.05, 0.0)
    z = np.zeros(2)
    fast = np.array([3.0, 0.0])  # qd/shoulder 2 above the bound

    def step(qd, now):
        return policy.residual(z, qd, z, z, z, np.array([0.5]), now)

    assert step(z, 0.0).skip is None
    assert step(fast, 0.01).skip is None  # outside, still debouncing
    out = step(fast, 0.06)
    assert out.residual is None and out.skip is Skip.OUT_OF_ENVELOPE and not out.model_error
    assert out.why.startswith("out_of_envelope: qd/shoulder = 3 is 2 above")
    assert step(z, 0.07).skip is None  # back inside: at once
    # A runtime margin of 1 (x the range 2 on each side) puts 3 rad/s inside.
    policy.configure_envelope(True, 0.05, 1.0)
    assert step(fast, 1.0).skip is None and step(fast, 2.0).skip is None
    # Check off: no monitor, a residual whatever the state.
    policy.configure_envelope(False, 0.05, 0.0)
    assert policy.monitor is None and step(fast, 3.0).skip is None
    # Without ``now`` (callers that do not keep time) there is no check either.
    policy.configure_envelope(True, 0.0, 0.0)
    assert policy.residual(z, fast, z, z, z, np.array([0.5])).skip is None
    plain = LoadedPolicy(constant_model(str(tmp_path / "p.onnx"), joints, obs, [20.0, 8.0], (3.0, -1.5)), "", expect)
    assert plain.envelope is None and plain.monitor is None and plain.residual(z, fast, z, z, z, np.array([0.5]),
                                                                                 0.0).skip is None
