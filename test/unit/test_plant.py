"""MujocoPlant / PlantParams (the mujoco_sim node around them: test/ros/test_mujoco_sim_node.py)."""
import time

import numpy as np
import pytest

from residual_control.robot.folder import load_robot
from residual_control.sim.plant import MujocoPlant, PlantParams

from support import ROOT as REPO
from support.planar_arm import NOMINAL_DAMPING, ArmModel, true_arm_model

RANDOMIZATION_RANGES = load_robot().randomization  # the built-in arm's

NO_FRICTION = PlantParams(friction_scale=0.0)


# ----------------------------------------------------------------- PlantParams
def test_plant_files_load():
    assert PlantParams.from_yaml(REPO / "config/plants/nominal.yaml") == PlantParams()
    real = PlantParams.from_yaml(REPO / "config/plants/real.yaml")
    assert real.payload_mass == pytest.approx(1.2) and real.actuator_latency == pytest.approx(0.003)
    for name, (low, high) in RANDOMIZATION_RANGES.items():
        assert low <= getattr(real, name) <= high, name


@pytest.mark.parametrize("change, match", [
    ({"payload_mas": 0.2}, "unknown \\['payload_mas'\\]"),
    ({"extra": 1.0}, "unknown \\['extra'\\]"),
    ({"payload_mass": None}, "expected a real number"),
    ({"payload_mass": "heavy"}, "expected a real number"),
    ({"friction_scale": float("nan")}, "friction_scale: expected a finite value"),
    ({"damping_scale": float("inf")}, "finite"),
    ({"actuator_latency": -0.001}, "actuator_latency: expected a value >= 0"),
    ({"actuator_gain": 0.0}, "actuator_gain: expected a value > 0"),
    ({"sensor_noise_std": True}, "expected a real number"),
])
def test_plant_params_validation(change, match):
    values = PlantParams().as_dict()
    if "payload_mas" in change:
        del values["payload_mass"]
    values.update(change)
    with pytest.raises(ValueError, match=match):
        PlantParams.from_mapping(values)


def test_plant_params_missing_key_and_bad_file(tmp_path):
    values = PlantParams().as_dict()
    del values["actuator_gain"]
    with pytest.raises(ValueError, match="expected keys .* found .*missing \\['actuator_gain'\\]"):
        PlantParams.from_mapping(values)
    with pytest.raises(ValueError, match="expected a mapping"):
        PlantParams.from_mapping([1, 2])
    bad = tmp_path / "bad.yaml"
    bad.write_text("payload_mass: -1\nfriction_scale: 1\ndamping_scale: 1\nactuator_gain: 1\n"
                   "actuator_latency: 0\nsensor_noise_std: 0\n")
    with pytest.raises(ValueError, match="bad.yaml: PlantParams.payload_mass: expected a value >= 0"):
        PlantParams.from_yaml(bad)
    with pytest.raises(ValueError, match="cannot read"):
        PlantParams.from_yaml(tmp_path / "missing.yaml")


def test_plant_params_sample():
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = PlantParams.sample(rng, RANDOMIZATION_RANGES)
        for name, (low, high) in RANDOMIZATION_RANGES.items():
            assert low <= getattr(p, name) <= high
    fixed = {k: (v[0], v[0]) for k, v in RANDOMIZATION_RANGES.items()}
    fixed["actuator_gain"] = (1.0, 1.0)
    assert PlantParams.sample(rng, fixed).payload_mass == 0.0
    with pytest.raises(ValueError, match="expected range keys"):
        PlantParams.sample(rng, {"payload_mass": (0, 1)})
    bad = dict(RANDOMIZATION_RANGES, payload_mass=(1.0, 0.0))
    with pytest.raises(ValueError, match="low <= high"):
        PlantParams.sample(rng, bad)


def test_true_arm_model():
    arm = true_arm_model(PlantParams(payload_mass=1.1, damping_scale=2.0))
    assert arm.payload_mass == pytest.approx(1.1)
    assert np.allclose(arm.viscous_friction, 2.0 * np.array(NOMINAL_DAMPING))
    assert tuple(arm.link_lengths) == tuple(ArmModel().link_lengths)


# ---------------------------------------------------------------- MujocoPlant
def test_plant_basics():
    plant = MujocoPlant(PlantParams())
    assert plant.joint_names == ("shoulder", "elbow")
    assert np.allclose(plant.torque_limits, [60.0, 30.0])
    assert plant.time == 0.0 and np.allclose(plant.q, 0)
    plant.step([0.0, 0.0], 0.01)
    assert plant.time == pytest.approx(0.01)
    plant.reset(q0=[0.1, 0.2], qd0=[0.0, 0.5])
    assert plant.time == 0.0 and np.allclose(plant.q, [0.1, 0.2]) and np.allclose(plant.qd, [0, 0.5])


@pytest.mark.parametrize("torque, duration, match", [
    ([1.0], 0.01, "step torque: expected 2 values, found 1"),
    ([1.0, 2.0, 3.0], 0.01, "expected 2 values, found 3"),
    ([float("nan"), 0.0], 0.01, "expected finite values"),
    ([0.0, float("inf")], 0.01, "expected finite values"),
    ([0.0, 0.0], 0.0002, "expected >= one physics step"),
    ([0.0, 0.0], float("nan"), "finite number of seconds"),
])
def test_step_rejects_bad_input(torque, duration, match):
    plant = MujocoPlant()
    with pytest.raises(ValueError, match=match):
        plant.step(torque, duration)
    assert plant.time == 0.0
    with pytest.raises(ValueError, match="reset q0: expected 2 values"):
        plant.reset(q0=[0.0])


@pytest.mark.parametrize("payload", [0.2, 1.2])
def test_gravity_torque_holds_the_arm(payload):
    params = NO_FRICTION.replace(payload_mass=payload)
    plant = MujocoPlant(params)
    q0 = np.array([0.4, -0.6])
    plant.reset(q0=q0)
    tau = true_arm_model(params).gravity_torque(q0)
    for _ in range(100):  # 1 s
        plant.step(tau, 0.01)
    assert np.allclose(plant.q, q0, atol=1e-6) and np.allclose(plant.qd, 0, atol=1e-6)
    # a wrong payload does not hold it
    plant.reset(q0=q0)
    for _ in range(20):
        plant.step(ArmModel(payload_mass=payload + 0.5).gravity_torque(q0), 0.01)
    assert plant.q[1] > q0[1] + 1e-3  # too much torque lifts the elbow


def test_zero_torque_falls_and_friction_holds_small_loads():
    plant = MujocoPlant(NO_FRICTION)
    plant.step([0.0, 0.0], 0.1)
    q = plant.q
    tip_z = 0.5 * np.sin(q[0]) + 0.4 * np.sin(q[0] + q[1])
    assert q[0] < -1e-2 and tip_z < -1e-2  # gravity pulls the arm down (negative angles)
    q0 = np.array([0.2, 0.1])
    moved = {}
    for scale in (0.0, 1.0):
        plant = MujocoPlant(PlantParams(friction_scale=scale))
        plant.reset(q0=q0)
        # excess torque below the Coulomb friction (0.8 / 0.5 N m): (soft) stiction
        plant.step(ArmModel().gravity_torque(q0) + np.array([0.4, 0.25]), 0.2)
        moved[scale] = np.abs(plant.q - q0).max()
    assert moved[0.0] > 10 * moved[1.0]


def _zero_gravity_plant(params):
    plant = MujocoPlant(params)
    plant.model.opt.gravity[:] = 0.0
    return plant


def test_latency_delays_the_effect():
    base = PlantParams(friction_scale=0.0)
    fast = _zero_gravity_plant(base)
    slow = _zero_gravity_plant(base.replace(actuator_latency=0.004))
    assert slow.latency_steps == 4
    tau = np.array([2.0, -1.0])
    qd_fast, qd_slow = [], []
    for _ in range(20):
        fast.step(tau, 0.001)
        slow.step(tau, 0.001)
        qd_fast.append(fast.qd)
        qd_slow.append(slow.qd)
    qd_fast, qd_slow = np.array(qd_fast), np.array(qd_slow)
    assert np.allclose(qd_slow[:4], 0.0) and np.all(np.abs(qd_fast[0]) > 0)
    assert np.allclose(qd_slow[4:], qd_fast[:-4], atol=1e-12)  # same response, 4 ms later
    # holding the command over a 10 ms control step applies the latency per physics step
    a = _zero_gravity_plant(base.replace(actuator_latency=0.004))
    b = _zero_gravity_plant(base.replace(actuator_latency=0.004))
    a.step(tau, 0.01)
    for _ in range(10):
        b.step(tau, 0.001)
    assert np.allclose(a.q, b.q, atol=1e-14) and np.allclose(a.qd, b.qd, atol=1e-14)


def test_actuator_gain_scales_torque_and_limits_clamp():
    tau = np.array([3.0, 1.0])
    out = {}
    for gain in (1.0, 1.2):
        plant = _zero_gravity_plant(PlantParams(friction_scale=0.0, damping_scale=0.0, actuator_gain=gain))
        plant.step(tau, 0.001)
        assert np.allclose(plant.applied_torque, gain * tau)
        out[gain] = plant.qd
    assert np.allclose(out[1.2], 1.2 * out[1.0], rtol=1e-9)
    plant = MujocoPlant(PlantParams(actuator_gain=0.9))
    plant.step([100.0, -100.0], 0.001)
    assert np.allclose(plant.applied_torque, [0.9 * 60.0, -0.9 * 30.0])


def test_set_params_keeps_state_and_changes_dynamics():
    plant = MujocoPlant(NO_FRICTION)
    q0 = np.array([0.3, 0.5])
    plant.reset(q0=q0)
    plant.step(ArmModel().gravity_torque(q0), 0.05)
    t = plant.time
    plant.set_params(NO_FRICTION.replace(payload_mass=1.5, actuator_latency=0.002))
    assert plant.time == t and np.allclose(plant.q, q0, atol=1e-6) and plant.latency_steps == 2
    for _ in range(10):
        plant.step(true_arm_model(plant.params).gravity_torque(q0), 0.01)
    assert np.allclose(plant.q, q0, atol=1e-3)
    with pytest.raises(ValueError, match="expected PlantParams"):
        plant.set_params({"payload_mass": 1.0})


def test_measure_noise():
    plant = MujocoPlant(PlantParams(sensor_noise_std=0.001), seed=1)
    q, qd = plant.q, plant.qd
    samples = np.array([np.concatenate(plant.measure()) for _ in range(4000)])
    assert np.allclose(samples[:, :2].std(axis=0), 0.001, rtol=0.1)
    assert np.allclose(samples[:, 2:].std(axis=0), 0.02, rtol=0.1)
    assert np.allclose(samples.mean(axis=0), np.concatenate([q, qd]), atol=2e-3)
    assert np.array_equal(plant.q, q)  # true state untouched
    exact = MujocoPlant(PlantParams())
    assert np.array_equal(exact.measure()[0], exact.q)
    again = MujocoPlant(PlantParams(sensor_noise_std=0.001), seed=1)
    assert np.array_equal(again.measure()[0], samples[0, :2])  # seeded


def test_step_is_fast():
    plant = MujocoPlant(PlantParams.from_yaml(REPO / "config/plants/real.yaml"))
    tau = np.array([5.0, 2.0])
    plant.step(tau, 0.01)
    durations = []
    for _ in range(200):
        t0 = time.perf_counter()
        plant.step(tau, 0.01)
        durations.append(time.perf_counter() - t0)
    assert np.median(durations) < 0.5e-3
