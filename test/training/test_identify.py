"""Identification of the plant from closed-loop logs (training/identify.py) on simulated episodes."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("mujoco")
pytest.importorskip("onnxruntime")

from support import ROOT  # noqa: E402

from residual_control.sim.plant import PlantParams  # noqa: E402
from residual_control.training.evaluate import load_reference_spec  # noqa: E402
from residual_control.training.identify import IdentificationError, identify  # noqa: E402
from residual_control.training.sim_logs import load_episode, save_episode, simulate_episode  # noqa: E402

PARAMS = str(ROOT / "config" / "residual_control.yaml")
SHIPPED = str(ROOT / "models" / "residual_bc_plain.onnx")
#: A plant outside the training ranges (heavier, weaker, more friction, later) with sensor noise.
GAP = PlantParams(payload_mass=2.0, friction_scale=2.3, damping_scale=2.0, actuator_gain=0.75,
                  actuator_latency=0.004, sensor_noise_std=0.0005)
#: Tolerances of the recovered values (one or two 10 s episodes with the sensor noise above).
TOL = {"payload_mass": 0.15, "actuator_gain": 0.04, "friction_scale": 0.35, "damping_scale": 0.4,
       "actuator_latency": 0.0015}


def _reference():
    return load_reference_spec(str(ROOT / "config" / "reference.yaml"))


@pytest.fixture(scope="module")
def gap_episode():
    return simulate_episode(GAP, SHIPPED, 10.0, seed=3, params_file=PARAMS, trajectory=_reference())


def _check(found: PlantParams, true: PlantParams):
    for key, tol in TOL.items():
        assert abs(getattr(found, key) - getattr(true, key)) <= tol, (key, getattr(found, key), getattr(true, key))


def test_recovers_the_plant_from_one_episode(gap_episode):
    ident = identify(gap_episode, bootstrap=30)
    _check(ident.params, GAP)
    # Nothing the plant lacks is added.
    assert ident.extra["effects_chosen"] == []
    assert not ident.params.has_effects
    assert ident.params.sensor_noise_std == pytest.approx(GAP.sensor_noise_std, rel=0.3)
    # The fit and the uncertainty: every scalar has a finite standard error > 0; the torque balance fits.
    for key in ("payload_mass", "actuator_gain", "friction_scale", "damping_scale"):
        se = ident.std_error[key]
        assert np.isfinite(se) and se > 0, (key, se)
    assert min(ident.r2) > 0.9 and all(np.isfinite(ident.residual_rms))
    # The narrow randomization holds the true plant's gain and payload, and lies outside the training ranges.
    ranges = ident.randomization()
    lo, hi = ranges["payload_mass"]
    assert lo <= GAP.payload_mass <= hi and lo > 1.5
    lo, hi = ranges["actuator_gain"]
    assert lo <= GAP.actuator_gain <= hi and hi < 0.8


def test_saved_episode_round_trips(gap_episode, tmp_path):
    path = tmp_path / "episode.npz"
    save_episode(gap_episode, path)
    back = load_episode(path)
    assert back.joints == gap_episode.joints
    np.testing.assert_array_equal(back.command, gap_episode.command)
    a = identify(back, bootstrap=5).params
    b = identify(gap_episode, bootstrap=5).params
    assert a == b


def test_recovers_the_effects_the_simulator_leaves_out():
    true = GAP.replace(joint_stiffness={"shoulder": 5.0}, joint_rest={"shoulder": 0.5},
                       coulomb_friction={"elbow": 0.6})
    eps = [simulate_episode(true, SHIPPED, 10.0, seed=s, params_file=PARAMS) for s in (1, 2, 3)]
    ident = identify(eps, bootstrap=30)
    assert set(ident.extra["effects_chosen"]) == {"joint_stiffness", "coulomb_friction"}
    _check(ident.params, true)
    assert ident.params.joint_stiffness["shoulder"] == pytest.approx(5.0, rel=0.15)
    assert ident.params.joint_rest["shoulder"] == pytest.approx(0.5, abs=0.1)
    assert ident.params.coulomb_friction.get("elbow", 0.0) == pytest.approx(0.6, abs=0.2)
    assert "elbow" not in ident.params.joint_stiffness
    # Without the effects' columns the same logs give a clearly worse fit.
    plain = identify(eps, bootstrap=5, effects=False)
    assert max(plain.residual_rms) > 1.5 * max(ident.residual_rms)


def test_refuses_an_episode_of_another_robot(gap_episode):
    other = dataclasses.replace(gap_episode, joints=("joint_a", "joint_b"))
    with pytest.raises(IdentificationError, match=r"expected the robot's joints \['shoulder', 'elbow'\], "
                                                  r"found \['joint_a', 'joint_b'\]"):
        identify(other)


def test_refuses_too_short_logs(gap_episode):
    short = dataclasses.replace(gap_episode, **{k: getattr(gap_episode, k)[:100] for k in (
        "t", "q", "qd", "q_ref", "qd_ref", "command", "a_base", "applied_residual", "residual", "perception")})
    with pytest.raises(IdentificationError, match="too short or too little motion"):
        identify(short)


def test_refuses_logs_without_motion():
    still = {"type": "sinusoid", "center": [0.3, 1.2], "amplitude": [0.0, 0.0], "frequency_hz": [0.5, 0.5],
             "phase": [0.0, 0.0]}
    ep = simulate_episode(GAP, SHIPPED, 5.0, seed=0, params_file=PARAMS, trajectory=still)
    with pytest.raises(IdentificationError, match="expected at least 200 complete periods with a joint moving"):
        identify(ep)


def test_refuses_no_episode():
    with pytest.raises(IdentificationError, match="at least one episode"):
        identify([])
