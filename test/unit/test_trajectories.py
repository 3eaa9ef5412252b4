"""Reference trajectory generators and config/reference.yaml."""

import numpy as np
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from residual_control.sim.trajectories import MinimumJerk, Sinusoid, make_trajectory

from support import ROOT

REFERENCE_YAML = ROOT / "config" / "reference.yaml"


def _fd_check(traj, t, h=1e-5, tol=1e-4):
    q, qd, qdd = traj.sample(t)
    qp, qdp, _ = traj.sample(t + h)
    qm, qdm, _ = traj.sample(t - h)
    assert np.allclose((qp - qm) / (2 * h), qd, atol=tol)
    assert np.allclose((qdp - qdm) / (2 * h), qdd, atol=tol * 10)


def test_sinusoid_values():
    s = Sinusoid([0.3, 0.5], [0.6, 0.7], [0.5, 0.25], [0.0, np.pi / 2])
    q, qd, qdd = s.sample(0.0)
    assert np.allclose(q, [0.3, 1.2])
    assert np.allclose(qd, [0.6 * np.pi, 0.0])
    assert np.allclose(qdd, [0.0, -0.7 * (0.5 * np.pi) ** 2])
    q, _, _ = s.sample(0.5)  # quarter period of joint 0
    assert q[0] == pytest.approx(0.9)
    assert s.dof == 2


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=0.0, max_value=50.0))
def test_sinusoid_derivatives_consistent(t):
    _fd_check(Sinusoid([0.3, 0.5], [0.6, 0.7], [0.3, 0.5], [0.1, 1.0]), t)


def test_min_jerk_waypoints_and_boundaries():
    wp = [[0.0, 0.0], [1.0, -0.5], [0.2, 0.4]]
    mj = MinimumJerk(wp, 2.0)
    for k, t in enumerate([0.0, 2.0, 4.0]):
        q, qd, qdd = mj.sample(t)
        assert np.allclose(q, wp[k]) and np.allclose(qd, 0) and np.allclose(qdd, 0, atol=1e-9)
    q, qd, _ = mj.sample(1.0)  # symmetric midpoint
    assert np.allclose(q, [0.5, -0.25])
    assert np.allclose(qd, np.array([1.0, -0.5]) * 1.875 / 2.0)
    q, qd, _ = mj.sample(100.0)
    assert np.allclose(q, wp[-1]) and np.allclose(qd, 0)
    q, _, _ = mj.sample(-1.0)
    assert np.allclose(q, wp[0])
    for t in np.linspace(0.05, 3.95, 17):
        _fd_check(mj, t)


def test_min_jerk_cycle_is_periodic():
    mj = MinimumJerk([[0.0, 0.0], [1.0, 1.0]], 1.5, cycle=True)
    assert mj.duration == pytest.approx(3.0)
    for t in (0.3, 1.0, 2.2):
        assert np.allclose(mj.sample(t)[0], mj.sample(t + 3.0)[0])
        assert np.allclose(mj.sample(t)[1], mj.sample(t + 6.0)[1])
    assert np.allclose(mj.sample(3.0)[0], [0.0, 0.0])


def test_make_trajectory():
    s = make_trajectory({"type": "sinusoid", "center": [0, 0], "amplitude": [1, 1], "frequency_hz": [1, 2]})
    assert isinstance(s, Sinusoid) and np.allclose(s.phase, 0)
    m = make_trajectory({"type": "min_jerk", "waypoints": [0, 0, 1, 1, 2, 0], "n_joints": 2,
                         "segment_duration": 1.0, "cycle": True})
    assert isinstance(m, MinimumJerk) and m.waypoints.shape == (3, 2) and m.cycle
    m = make_trajectory({"type": "min_jerk", "waypoints": [[0, 0], [1, 1]], "segment_duration": 1.0})
    assert m.dof == 2


@pytest.mark.parametrize("spec, match", [
    ("sinusoid", "expected a mapping"),
    ({"type": "square"}, "expected type"),
    ({"center": [0]}, "expected type"),
    ({"type": "sinusoid", "center": [0, 0], "amplitude": [1, 1]}, "missing \\['frequency_hz'\\]"),
    ({"type": "sinusoid", "center": [0, 0], "amplitude": [1, 1], "frequency_hz": [1, 1], "foo": 1},
     "unknown \\['foo'\\]"),
    ({"type": "sinusoid", "center": [0, 0], "amplitude": [1], "frequency_hz": [1, 1]},
     "amplitude: expected 2 values"),
    ({"type": "sinusoid", "center": [0, float("nan")], "amplitude": [1, 1], "frequency_hz": [1, 1]},
     "finite"),
    ({"type": "sinusoid", "center": [0], "amplitude": [1], "frequency_hz": [-1]}, ">= 0"),
    ({"type": "min_jerk", "waypoints": [[0, 0]], "segment_duration": 1.0}, "K >= 2"),
    ({"type": "min_jerk", "waypoints": [[0, 0], [1, 1]], "segment_duration": 0.0}, "> 0"),
    ({"type": "min_jerk", "waypoints": [0, 0, 1], "n_joints": 2, "segment_duration": 1.0},
     "multiple of n_joints"),
    ({"type": "min_jerk", "waypoints": "abc", "segment_duration": 1.0}, "waypoints"),
])
def test_make_trajectory_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        make_trajectory(spec)


def test_sample_rejects_non_finite_time():
    with pytest.raises(ValueError, match="finite time"):
        Sinusoid([0], [1], [1]).sample(float("nan"))


def test_reference_yaml_builds_wide_trajectories():
    params = yaml.safe_load(REFERENCE_YAML.read_text())["reference_publisher"]["ros__parameters"]
    n = len(params["joints"])
    assert params["trajectory_type"] in ("sinusoid", "min_jerk")
    sin = make_trajectory({"type": "sinusoid", **{k: params[k] for k in
                           ("center", "amplitude", "frequency_hz", "phase")}})
    mj = make_trajectory({"type": "min_jerk", "waypoints": params["waypoints"], "n_joints": n,
                          "segment_duration": params["segment_duration"], "cycle": params["cycle"]})
    assert sin.dof == mj.dof == n
    assert np.all((sin.frequency_hz >= 0.3) & (sin.frequency_hz <= 0.5))
    for traj, horizon in ((sin, 20.0), (mj, mj.duration)):
        qs = np.array([traj.sample(t)[0] for t in np.linspace(0, horizon, 400)])
        span = qs.max(axis=0) - qs.min(axis=0)
        assert np.all(span > 1.0), span  # both joints move over a wide range
        assert np.all(np.abs(qs) < 2.5)  # inside the joint limits (+-3 rad)
