"""Base controllers.

PID (P, I with clamp and anti-windup, D on measurement, filter), PD + gravity, make_base_controller
from the params file, validation, and a closed-loop check on the MuJoCo plant.
"""
import math

import numpy as np
import pytest

from residual_control import params_file
from support.planar_arm import ArmModel
from residual_control.core.base_controllers import PID, ComputedTorque, PDGravity, make_base_controller
from residual_control.robot.nominal import nominal_model
from residual_control.core.errors import ConfigError, ObservationError

from support import ROOT as REPO
from support import flat

J = ("shoulder", "elbow")
BIG = [1e6, 1e6]
Z = np.zeros(2)


def pid(kp=(0.0, 0.0), ki=(0.0, 0.0), kd=(0.0, 0.0), cmin=(-1e6, -1e6), cmax=(1e6, 1e6), **kw):
    return PID(J, list(kp), list(ki), list(kd), list(cmin), list(cmax), **kw)


def params_file_section(name: str) -> dict:
    """Flat params a node runs with (schema defaults, `/**`, its section), `model:` flattened to `model.*`."""
    return flat(params_file.node_params(params_file.load(REPO / "config/residual_control.yaml"), name))


# ----------------------------------------------------------------- PID
def test_pid_proportional():
    c = pid(kp=(10.0, 5.0))
    tau = c.compute([0.1, 0.2], Z, [0.3, 0.1], Z, 0.0)
    np.testing.assert_allclose(tau, [2.0, -0.5])


def test_pid_velocity_reference_feeds_d_term():
    c = pid(kd=(2.0, 3.0))
    np.testing.assert_allclose(c.compute(Z, Z, Z, [1.0, -1.0], 0.0), [2.0, -3.0])


def test_pid_integral_grows_with_error_and_dt():
    c = pid(kp=(1.0, 1.0), ki=(2.0, 4.0))
    e = np.array([0.5, -0.25])
    outs = [c.compute(Z, Z, e, Z, k * 0.01) for k in range(11)]
    # first call has no dt: no integration yet; then ki * e * dt per step
    np.testing.assert_allclose(outs[0], e)
    np.testing.assert_allclose(outs[10], e + np.array([2.0, 4.0]) * e * 0.1, rtol=1e-9)
    np.testing.assert_allclose(np.diff(np.array(outs), axis=0), np.tile([0.01, -0.01], (10, 1)), atol=1e-12)


def test_pid_integral_clamp():
    c = pid(ki=(10.0, 10.0), integral_limit=[0.05, 0.5])
    for k in range(100):
        tau = c.compute(Z, Z, [1.0, -1.0], Z, k * 0.01)
    np.testing.assert_allclose(tau, [0.05, -0.5])
    # the clamp is not a latch: the integral unwinds as soon as the error reverses
    tau = c.compute(Z, Z, [-1.0, 1.0], Z, 1.0)
    np.testing.assert_allclose(tau, [0.05 - 0.1, -0.5 + 0.1], atol=1e-12)


def test_pid_conditional_anti_windup():
    c = pid(kp=(10.0, 10.0), ki=(5.0, 5.0), cmin=(-1.0, -1.0), cmax=(1.0, 1.0))
    for k in range(200):  # saturated high (kp e = 5 > 1): must not integrate further
        tau = c.compute(Z, Z, [0.5, -0.5], Z, k * 0.01)
        np.testing.assert_allclose(tau, [1.0, -1.0])
    # error drops to a small value: output = kp e (+ nothing wound up)
    tau = c.compute(Z, Z, [0.01, -0.01], Z, 2.0)
    np.testing.assert_allclose(tau, [0.1 + 5 * 0.01 * 0.01, -0.1 - 5 * 0.01 * 0.01], atol=1e-12)


def test_pid_integrates_out_of_saturation():
    """Integration towards the inside of the limits is allowed while saturated."""
    c = pid(kp=(10.0, 10.0), ki=(1.0, 1.0), cmin=(-1.0, -1.0), cmax=(1.0, 1.0), integral_limit=[100, 100])
    c.compute(Z, Z, [0.0, 0.0], Z, 0.0)
    c._integral[:] = [5.0, -5.0]  # wound up by an earlier disturbance
    c.compute(Z, Z, [-0.2, 0.2], Z, 0.1)  # unsat = -2 + 5 = 3 >= max, but grow < 0 -> allowed
    np.testing.assert_allclose(c._integral, [5.0 - 0.02, -5.0 + 0.02])


def test_pid_reference_step_gives_no_derivative_kick():
    c = pid(kp=(10.0, 10.0), kd=(5.0, 5.0))
    q = np.array([0.2, -0.1])
    for k in range(10):
        before = c.compute(q, Z, [0.2, -0.1], Z, k * 0.001)
    after = c.compute(q, Z, [0.7, 0.4], Z, 0.01)  # reference steps by 0.5
    np.testing.assert_allclose(after - before, [5.0, 5.0], atol=1e-12)


def test_pid_measurement_step_gives_filtered_derivative():
    fc, dt = 40.0, 0.001
    c = pid(kd=(1.0, 1.0), derivative_filter_hz=fc)
    c.compute(Z, Z, Z, Z, 0.0)
    tau = c.compute([0.01, 0.0], Z, Z, Z, dt)
    alpha = dt / (dt + 1.0 / (2 * math.pi * fc))
    np.testing.assert_allclose(tau, [-alpha * 0.01 / dt, 0.0], rtol=1e-9)


def _d_amplitude(fc, freq, dt=0.001, n=2000, amp=1e-3):
    c = pid(kd=(1.0, 1.0), derivative_filter_hz=fc)
    out = []
    for k in range(n):
        q = amp * math.sin(2 * math.pi * freq * k * dt)
        out.append(-c.compute([q, 0.0], Z, Z, Z, k * dt)[0])
    return np.max(np.abs(out[n // 2:])), np.array(out)


def test_pid_low_pass_attenuates_high_frequency_measurement():
    amp, f_hi = 1e-3, 250.0
    true_hi = 2 * math.pi * f_hi * amp  # amplitude of the true derivative
    filtered, _ = _d_amplitude(40.0, f_hi, amp=amp)
    unfiltered, _ = _d_amplitude(1e4, f_hi, amp=amp)
    # 4 samples per period: the finite difference itself sees ~0.64 of the true amplitude
    assert unfiltered > 0.5 * true_hi
    assert filtered < 0.3 * unfiltered, (filtered, unfiltered)
    # a slow signal passes (1 Hz << 40 Hz): derivative tracked within a few percent
    slow, _ = _d_amplitude(40.0, 1.0, n=2000, amp=amp)
    assert slow == pytest.approx(2 * math.pi * 1.0 * amp, rel=0.05)


def test_pid_reset_forgets_integral_and_filter():
    c = pid(kp=(1.0, 1.0), ki=(10.0, 10.0), kd=(1.0, 1.0))
    for k in range(50):
        c.compute([0.01 * k, 0.0], Z, [1.0, 1.0], Z, k * 0.01)
    assert np.any(np.abs(c._integral) > 0.1)
    c.reset()
    tau = c.compute([0.3, 0.0], Z, [1.0, 1.0], Z, 100.0)  # first call after reset: P only
    np.testing.assert_allclose(tau, [0.7, 1.0])


def test_pid_time_backwards_restarts_filters():
    c = pid(kd=(1.0, 1.0))
    c.compute(Z, Z, Z, Z, 5.0)
    c.compute([0.01, 0.0], Z, Z, Z, 5.001)
    c.compute([0.02, 0.0], Z, Z, Z, 1.0)  # time went back
    tau = c.compute([0.02, 0.0], Z, Z, Z, 1.001)
    np.testing.assert_allclose(tau, [0.0, 0.0], atol=1e-12)


def test_pid_output_limits():
    c = pid(kp=(100.0, 100.0), cmin=(-5.0, -1.0), cmax=(3.0, 2.0))
    np.testing.assert_allclose(c.compute(Z, Z, [1.0, 1.0], Z, 0.0), [3.0, 2.0])
    np.testing.assert_allclose(c.compute(Z, Z, [-1.0, -1.0], Z, 0.01), [-5.0, -1.0])
    np.testing.assert_allclose(c.compute(Z, Z, [0.01, 0.01], Z, 0.02), [1.0, 1.0])


def test_pid_describe():
    d = pid(kp=(1.0, 2.0), ki=(3.0, 4.0), kd=(5.0, 6.0), integral_limit=[7.0, 8.0]).describe()
    assert d == {"type": "pid", "kp": [1.0, 2.0], "ki": [3.0, 4.0], "kd": [5.0, 6.0],
                 "integral_limit": [7.0, 8.0], "derivative_filter_hz": 40.0}


# ----------------------------------------------------------------- PD + gravity
def test_pd_gravity_matches_formula():
    model = ArmModel()
    c = PDGravity(J, [60.0, 40.0], [6.0, 4.0], [-1e6, -1e6], BIG, model)
    rng = np.random.default_rng(3)
    for _ in range(20):
        q, qd, qr, qdr = (rng.uniform(-2, 2, 2) for _ in range(4))
        expected = np.array([60.0, 40.0]) * (qr - q) + np.array([6.0, 4.0]) * (qdr - qd) + model.gravity_torque(q)
        np.testing.assert_allclose(c.compute(q, qd, qr, qdr, 0.0), expected, rtol=1e-12)
    # at rest on the reference: only gravity, largest with the arm horizontal
    g0 = c.compute(Z, Z, Z, Z, 0.0)
    assert g0[0] > g0[1] > 0
    np.testing.assert_allclose(c.compute([math.pi / 2, 0.0], Z, [math.pi / 2, 0.0], Z, 0.0), [0, 0], atol=1e-9)


def test_pd_gravity_output_limits():
    c = PDGravity(J, [60.0, 40.0], [6.0, 4.0], [-60.0, -30.0], [60.0, 30.0], ArmModel())
    np.testing.assert_allclose(c.compute(Z, Z, [3.0, 3.0], Z, 0.0), [60.0, 30.0])
    np.testing.assert_allclose(c.compute(Z, Z, [-3.0, -3.0], Z, 0.0), [-60.0, -30.0])


# ----------------------------------------------------------------- factory from the params file
def build(params):
    """Build a base controller as the nodes do: with the nominal model of the params' robot."""
    return make_base_controller(params, nominal_model(params))


def test_make_base_controller_from_params_file():
    p = params_file_section("base_controller")
    assert p["robot"] == "planar2" and p["model.payload_mass"] == 0.2
    c = build(p)
    assert isinstance(c, PDGravity) and c.joints == J
    np.testing.assert_array_equal(c.kp, [60.0, 40.0])
    np.testing.assert_array_equal(c.kd, [6.0, 4.0])
    np.testing.assert_array_equal(c.command_min, [-60.0, -30.0])
    # The robot's description with the nominal payload: the planar arm's analytic model.
    rng = np.random.default_rng(0)
    for q in rng.uniform(-3, 3, (20, 2)):
        np.testing.assert_allclose(c.model.gravity_torque(q), ArmModel(payload_mass=0.2).gravity_torque(q),
                                   rtol=1e-9, atol=1e-9)
    d = c.describe()
    assert d["type"] == "pd_gravity" and d["model"]["payload_mass"] == 0.2


def test_make_base_controller_pid_from_params_file():
    p = params_file_section("base_controller")
    p["controller_type"] = "pid"
    assert nominal_model(p) is None  # nothing uses a model
    c = make_base_controller(p)
    assert isinstance(c, PID)
    np.testing.assert_array_equal(c.integral_limit, [10.0, 5.0])
    assert c.derivative_filter_hz == 40.0
    np.testing.assert_array_equal(c.ki, [0.0, 0.0])


def test_make_base_controller_nested_model_mapping():
    p = {k: v for k, v in params_file_section("base_controller").items() if not k.startswith("model.")}
    p["model"] = {"payload_mass": 1.0}
    c = build(p)
    assert c.model.payload_mass == 1.0
    np.testing.assert_allclose(c.model.gravity_torque([0.3, 0.2]),
                               ArmModel(payload_mass=1.0).gravity_torque([0.3, 0.2]))


def test_a_model_based_controller_without_a_model_is_refused():
    with pytest.raises(ConfigError, match="pd_gravity: expected a nominal model"):
        make_base_controller(params_file_section("base_controller"))


BAD_BASE = [
    ({"controller_type": "lqr"},
     "controller_type: expected one of ['pid', 'pd_gravity', 'computed_torque', 'mpc'], found 'lqr'"),
    ({"joints": []}, "joints: expected"),
    ({"kp": [1.0, 2.0, 3.0]}, "kp: expected 2 values (one per joint), found 3"),
    ({"kd": [-1.0, 2.0]}, "kd: expected values >= 0, found [-1.0, 2.0]"),
    ({"kp": [float("nan"), 2.0]}, "kp: expected finite values"),
    ({"command_min": [70.0, -30.0]}, "command_min/command_max: expected min <= max"),
    ({"command_max": [60.0]}, "command_max: expected 2 values"),
    ({"model.payload_mass": float("nan")}, "model.payload_mass: expected a mass >= 0 kg, found nan"),
    ({"model.backend": "bullet"}, "dynamics backend: expected one of ['mujoco', 'pinocchio'], found 'bullet'"),
    ({"robot": "no_such_robot"}, "robot: robot 'no_such_robot': expected a robot folder"),
    ({"robot": ""}, "robot: expected a robot folder or a shipped robot's name"),
    ({"joints": ["elbow", "shoulder"]}, "joints: expected the joints of robot 'planar2' ['shoulder', 'elbow']"),
    ({"controller_type": "computed_torque", "derivative_filter_hz": -1.0},
     "derivative_filter_hz: expected a number > 0"),
    ({"controller_type": "pid", "ki": [-1.0, 0.0]}, "ki: expected values >= 0"),
    ({"controller_type": "pid", "integral_limit": [1.0]}, "integral_limit: expected 2 values"),
    ({"controller_type": "pid", "derivative_filter_hz": 0.0}, "derivative_filter_hz: expected a number > 0, found 0"),
]


@pytest.mark.parametrize("change, fragment", BAD_BASE, ids=[f"{list(c)[-1]}-{i}" for i, (c, _) in enumerate(BAD_BASE)])
def test_make_base_controller_rejects_bad_config(change, fragment):
    p = params_file_section("base_controller")
    p.update(change)
    with pytest.raises(ConfigError) as info:
        build(p)
    msg = str(info.value)
    assert fragment in msg, msg
    assert "expected" in msg


@pytest.mark.parametrize("kind", ["pid", "pd_gravity", "computed_torque"])
def test_make_base_controller_missing_gain_is_config_error(kind):
    p = params_file_section("base_controller")
    p["controller_type"] = kind
    del p["kp"]
    with pytest.raises(ConfigError, match="kp"):
        build(p)


def test_make_base_controller_non_numeric_gain_is_config_error():
    p = params_file_section("base_controller")
    p["kp"] = ["sixty", "forty"]
    with pytest.raises(ConfigError, match="kp: expected"):
        build(p)


# ----------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("controller", ["pid", "pd_gravity", "computed_torque"])
@pytest.mark.parametrize("arg, value, fragment", [
    (0, [0.0, 0.0, 0.0], "q: expected shape (2,), found (3,)"),
    (1, [0.0], "qd: expected shape (2,), found (1,)"),
    (2, [[0.0, 0.0]], "q_ref: expected shape (2,), found (1, 2)"),
    (0, [float("nan"), 0.0], "q: expected finite values"),
    (1, [0.0, float("inf")], "qd: expected finite values"),
    (3, [0.0, -float("inf")], "qd_ref: expected finite values"),
    (4, float("nan"), "t: expected a finite time"),
])
def test_bad_inputs_raise_observation_error(controller, arg, value, fragment):
    p = params_file_section("base_controller")
    p["controller_type"] = controller
    c = build(p)
    args = [Z, Z, Z, Z, 0.0]
    args[arg] = value
    with pytest.raises(ObservationError) as info:
        c.compute(*args)
    assert fragment in str(info.value)


def test_bad_input_does_not_corrupt_pid_state():
    c = pid(kp=(1.0, 1.0), ki=(1.0, 1.0))
    c.compute(Z, Z, [1.0, 1.0], Z, 0.0)
    with pytest.raises(ObservationError):
        c.compute([float("nan"), 0.0], Z, [1.0, 1.0], Z, 0.01)
    np.testing.assert_allclose(c.compute(Z, Z, [1.0, 1.0], Z, 0.01), [1.01, 1.01])


# ----------------------------------------------------------------- closed loop on the MuJoCo plant
def _closed_loop(controller, plant_params, q_ref=(0.4, -0.3), duration=6.0, dt=0.01):
    from residual_control.sim.plant import MujocoPlant

    plant = MujocoPlant(plant_params, seed=0)
    plant.reset()
    controller.reset()
    q_ref = np.array(q_ref)
    t = 0.0
    for _ in range(int(round(duration / dt))):
        tau = controller.compute(plant.q, plant.qd, q_ref, Z, t)
        assert np.all(np.isfinite(tau))
        plant.step(tau, dt)
        t += dt
    return q_ref - plant.q, plant.qd


def test_closed_loop_pd_gravity_holds_setpoint_on_nominal_plant():
    from residual_control.sim.plant import PlantParams

    c = build(params_file_section("base_controller"))
    err, qd = _closed_loop(c, PlantParams())
    assert np.all(np.abs(err) < 0.01), err
    assert np.all(np.abs(qd) < 1e-2), qd


def test_closed_loop_integral_removes_payload_offset():
    from residual_control.sim.plant import PlantParams

    heavy = PlantParams(payload_mass=1.2)
    cmin, cmax = [-60.0, -30.0], [60.0, 30.0]
    pd = PID(J, [60.0, 40.0], [0.0, 0.0], [6.0, 4.0], cmin, cmax)
    pdg = build(params_file_section("base_controller"))  # nominal payload 0.2 kg
    pid_c = PID(J, [60.0, 40.0], [120.0, 80.0], [6.0, 4.0], cmin, cmax, integral_limit=[40.0, 20.0])
    err_pd, _ = _closed_loop(pd, heavy)
    err_pdg, _ = _closed_loop(pdg, heavy)
    err_pid, qd = _closed_loop(pid_c, heavy, duration=10.0)
    assert np.max(np.abs(err_pd)) > 0.1, err_pd       # gravity of arm + payload uncompensated
    assert np.max(np.abs(err_pdg)) > 0.05, err_pdg    # 1 kg payload error uncompensated
    assert np.all(np.abs(err_pid) < 5e-3), err_pid    # integral action removes it
    assert np.all(np.abs(qd) < 1e-2)


# ----------------------------------------------------------------- computed torque
def test_computed_torque_is_inverse_dynamics_along_the_reference_plus_pd():
    model = ArmModel()
    kp, kd = np.array([60.0, 40.0]), np.array([6.0, 4.0])
    c = ComputedTorque(J, kp, kd, [-1e6, -1e6], BIG, model, accel_filter_hz=1e9)  # no filter lag
    rng = np.random.default_rng(5)
    qd_ref_prev = rng.uniform(-1, 1, 2)
    c.compute(Z, Z, Z, qd_ref_prev, 0.0)
    for k in range(1, 10):
        q, qd, qr, qdr = (rng.uniform(-2, 2, 2) for _ in range(4))
        qdd_ref = (qdr - qd_ref_prev) / 0.01
        expected = model.inverse_dynamics(q, qd, qdd_ref) + kp * (qr - q) + kd * (qdr - qd)
        np.testing.assert_allclose(c.compute(q, qd, qr, qdr, 0.01 * k), expected, rtol=1e-4, atol=1e-6)
        qd_ref_prev = qdr


def test_computed_torque_restarts_its_acceleration_estimate_after_reset_and_a_time_jump_back():
    model = ArmModel()
    c = ComputedTorque(J, [0.0, 0.0], [0.0, 0.0], [-1e6, -1e6], BIG, model)
    c.compute(Z, Z, Z, Z, 0.0)
    assert not np.allclose(c.compute(Z, Z, Z, [1.0, 1.0], 0.01), model.gravity_torque(Z))
    for restart in (lambda: c.reset(), lambda: None):
        restart()
        t = -5.0  # a jump back after the second's first call
        np.testing.assert_allclose(c.compute(Z, Z, Z, [3.0, 3.0], t), model.gravity_torque(Z))


def test_closed_loop_computed_torque_tracks_a_moving_reference_better_than_pd_gravity():
    from residual_control.sim.plant import MujocoPlant, PlantParams

    def rmse(kind):
        p = params_file_section("base_controller")
        p["controller_type"] = kind
        c = build(p)
        plant = MujocoPlant(PlantParams(friction_scale=0.0, damping_scale=0.0), seed=0)
        plant.reset([0.3, 0.5])
        err = []
        for k in range(300):
            t = 0.01 * k
            qr = np.array([0.3 + 0.6 * np.sin(2 * np.pi * 0.5 * t), 0.5 + 0.7 * np.sin(2 * np.pi * 0.5 * t)])
            qdr = np.array([0.6, 0.7]) * 2 * np.pi * 0.5 * np.cos(2 * np.pi * 0.5 * t)
            plant.step(c.compute(plant.q, plant.qd, qr, qdr, t), 0.01)
            err.append(qr - plant.q)
        return float(np.sqrt(np.mean(np.square(err[50:]))))

    ct, pdg = rmse("computed_torque"), rmse("pd_gravity")
    assert ct < 0.5 * pdg, (ct, pdg)
