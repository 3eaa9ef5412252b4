"""Nominal rigid-body dynamics (residual_control.robot.dynamics) against ArmModel, Pinocchio and MuJoCo.

The planar ArmModel on the built-in arm, Pinocchio on random chains, and MuJoCo's own forward dynamics.
"""
from __future__ import annotations

import json
import sys

import mujoco
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.planar_arm import ArmModel
from residual_control.paths import description_path
from residual_control.robot import compile_robot
from residual_control.robot.dynamics import (
    MujocoDynamics,
    PinocchioDynamics,
    make_dynamics,
    pinocchio_available,
)
from support.chains import random_chain_urdf

needs_pin = pytest.mark.skipif(not pinocchio_available(),
                               reason="pinocchio (pip install pin==4.1.0) is not installed")

angle = st.floats(-3.0, 3.0, allow_nan=False)
rate = st.floats(-4.0, 4.0, allow_nan=False)
accel = st.floats(-20.0, 20.0, allow_nan=False)


@pytest.fixture(scope="module")
def arm():
    return compile_robot(description_path("arm.mjcf.xml"), payload_link="payload")


def _own_payload_mass() -> float:
    """Return the mass the description itself puts on its payload body (the dynamics' payload adds to it)."""
    raw = mujoco.MjModel.from_xml_path(str(description_path("arm.mjcf.xml")))
    return float(raw.body("payload").mass[0])


def _chain(tmp_path, seed: int, n: int, shuffle: bool = True, subset: bool = False):
    rng = np.random.default_rng(seed)
    path = tmp_path / f"chain_{seed}_{n}.urdf"
    path.write_text(random_chain_urdf(rng, n))
    names = [f"j{i}" for i in range(1, n + 1)]
    if subset:
        names = [x for x in names if rng.random() < 0.7] or names[:1]
    if shuffle:
        names = list(rng.permutation(names))
    return compile_robot(path, joints=names, payload_link="tool0"), rng


# ----------------------------------------------------------------------------------- ArmModel
@settings(max_examples=60, deadline=None)
@given(q=st.tuples(angle, angle), qd=st.tuples(rate, rate), qdd=st.tuples(accel, accel),
       payload=st.floats(0.0, 3.0), friction=st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 2.0)))
def test_mujoco_dynamics_matches_the_planar_arm_model(arm, q, qd, qdd, payload, friction):
    dyn = MujocoDynamics(arm, payload_mass=payload, viscous_friction=friction)
    ref = ArmModel(payload_mass=_own_payload_mass() + payload, viscous_friction=friction)
    q, qd, qdd = map(np.array, (q, qd, qdd))
    np.testing.assert_allclose(dyn.gravity_torque(q), ref.gravity_torque(q), atol=1e-6)
    np.testing.assert_allclose(dyn.mass_matrix(q), ref.mass_matrix(q), atol=1e-6)
    # ArmModel's Coriolis term differentiates M numerically: 1e-5 is its own accuracy.
    np.testing.assert_allclose(dyn.coriolis_torque(q, qd), ref.coriolis_torque(q, qd), atol=1e-5)
    np.testing.assert_allclose(dyn.inverse_dynamics(q, qd, qdd), ref.inverse_dynamics(q, qd, qdd), atol=1e-5)


def test_arm_model_interface(arm):
    dyn = make_dynamics(arm, payload_mass=0.4, viscous_friction=[0.1, 0.2])
    assert isinstance(dyn, MujocoDynamics)
    assert dyn.dof == 2 and dyn.payload_mass == 0.4
    np.testing.assert_allclose(dyn.viscous_friction, [0.1, 0.2])
    heavier = dyn.with_payload(1.4)
    assert heavier.payload_mass == 1.4 and dyn.payload_mass == 0.4
    np.testing.assert_allclose(heavier.viscous_friction, [0.1, 0.2])
    q = np.array([0.4, -0.3])
    # One extra kilogram at the tip (0.9 m along the arm at absolute angles 0.4 and 0.1) adds its weight's moment.
    tip = np.array([0.5 * np.cos(0.4) + 0.4 * np.cos(0.1), 0.4 * np.cos(0.1)])
    np.testing.assert_allclose(heavier.gravity_torque(q) - dyn.gravity_torque(q), 9.81 * tip, atol=1e-9)
    info = dyn.describe()
    assert info["backend"] == "mujoco" and info["joints"] == ["shoulder", "elbow"]
    assert info["payload_mass"] == 0.4 and info["viscous_friction"] == [0.1, 0.2]
    json.dumps(info)  # a dict for logs


def test_dynamics_leaves_the_compiled_model_alone(arm):
    before = (arm.model.body_mass.copy(), arm.model.dof_damping.copy(), arm.model.opt.disableflags)
    MujocoDynamics(arm, payload_mass=2.0).gravity_torque([0.1, 0.2])
    assert np.array_equal(arm.model.body_mass, before[0])
    assert np.array_equal(arm.model.dof_damping, before[1])
    assert arm.model.opt.disableflags == before[2]


def test_bad_input_is_refused(arm):
    dyn = MujocoDynamics(arm)
    with pytest.raises(ValueError, match=r"q: expected 2 values \(one per joint\), found 3"):
        dyn.gravity_torque([0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"qdd: expected 2 values"):
        dyn.inverse_dynamics([0.0, 0.0], [0.0, 0.0], [1.0])
    with pytest.raises(ValueError, match=r"payload_mass: expected a finite mass >= 0 kg, found -1"):
        MujocoDynamics(arm, payload_mass=-1.0)
    with pytest.raises(ValueError, match=r"viscous_friction: expected 2 finite numbers >= 0"):
        MujocoDynamics(arm, viscous_friction=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"dynamics backend: expected one of \['mujoco', 'pinocchio'\], found 'rbdl'"):
        make_dynamics(arm, backend="rbdl")
    with pytest.raises(TypeError, match=r"expected a CompiledRobot"):
        MujocoDynamics(arm.model)


def test_missing_pinocchio_is_a_clear_error(arm, monkeypatch):
    monkeypatch.setitem(sys.modules, "pinocchio", None)  # import pinocchio raises ImportError
    assert not pinocchio_available()
    with pytest.raises(ImportError, match=r"pip install pin==4\.1\.0.*backend 'mujoco'"):
        make_dynamics(arm, backend="pinocchio")


# ----------------------------------------------------------------------------------- MuJoCo forward dynamics
def _forward_qacc(compiled, dyn_payload, q, qd, tau):
    """Return the qacc MuJoCo's forward dynamics gives for joint torques tau applied through the motors."""
    m = compiled.model.__copy__()
    m.body_mass[compiled.payload_body_id] = dyn_payload
    m.dof_damping[:] = 0.0
    m.dof_frictionloss[:] = 0.0
    m.jnt_actfrclimited[:] = 0
    m.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONSTRAINT) | int(mujoco.mjtDisableBit.mjDSBL_CLAMPCTRL)
    d = mujoco.MjData(m)
    d.qpos[compiled.qpos_ids] = q
    d.qvel[compiled.dof_ids] = qd
    d.ctrl[compiled.actuator_ids] = tau / compiled.actuator_gear
    mujoco.mj_forward(m, d)
    return d.qacc[compiled.dof_ids].copy()


@pytest.mark.parametrize("seed, n", [(1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (6, 7)])
def test_inverse_dynamics_inverts_mujoco_forward_dynamics(tmp_path, seed, n):
    compiled, rng = _chain(tmp_path, seed, n)
    payload = float(rng.uniform(0.0, 3.0))
    dyn = MujocoDynamics(compiled, payload_mass=payload)
    for _ in range(20):
        lo, hi = compiled.position_limits
        q = rng.uniform(lo, hi)
        qd = rng.uniform(-2.0, 2.0, n)
        qdd = rng.uniform(-10.0, 10.0, n)
        tau = dyn.inverse_dynamics(q, qd, qdd)
        np.testing.assert_allclose(_forward_qacc(compiled, payload, q, qd, tau), qdd, atol=1e-6)
        # and the parts: M is d tau / d qdd, the bias is tau at qdd = 0
        np.testing.assert_allclose(tau, dyn.mass_matrix(q) @ qdd + dyn.coriolis_torque(q, qd) + dyn.gravity_torque(q),
                                   atol=1e-8)


def test_armature_is_in_the_mass_matrix_and_inverse_dynamics(tmp_path):
    text = description_path("arm.mjcf.xml").read_text().replace('<joint name="elbow"',
                                                                '<joint name="elbow" armature="0.25"')
    path = tmp_path / "arm.xml"
    path.write_text(text)
    compiled = compile_robot(path)
    plain = MujocoDynamics(compile_robot(description_path("arm.mjcf.xml")))
    dyn = MujocoDynamics(compiled)
    q, qd, qdd = np.array([0.3, 0.8]), np.array([1.0, -2.0]), np.array([2.0, 5.0])
    np.testing.assert_allclose(dyn.mass_matrix(q) - plain.mass_matrix(q), [[0.0, 0.0], [0.0, 0.25]], atol=1e-12)
    np.testing.assert_allclose(dyn.inverse_dynamics(q, qd, qdd) - plain.inverse_dynamics(q, qd, qdd), [0.0, 1.25],
                               atol=1e-12)
    np.testing.assert_allclose(_forward_qacc(compiled, 0.0, q, qd, dyn.inverse_dynamics(q, qd, qdd)), qdd, atol=1e-9)


def test_mass_matrix_is_symmetric_positive_definite_and_coriolis_quadratic(tmp_path):
    compiled, rng = _chain(tmp_path, 21, 7)
    dyn = MujocoDynamics(compiled, payload_mass=1.0)
    for _ in range(10):
        q = rng.uniform(*compiled.position_limits)
        qd = rng.uniform(-2.0, 2.0, 7)
        mm = dyn.mass_matrix(q)
        np.testing.assert_allclose(mm, mm.T, atol=1e-12)
        assert np.min(np.linalg.eigvalsh(mm)) > 0.0
        np.testing.assert_allclose(dyn.coriolis_torque(q, 2.0 * qd), 4.0 * dyn.coriolis_torque(q, qd), atol=1e-9)
        assert np.allclose(dyn.coriolis_torque(q, np.zeros(7)), 0.0, atol=1e-12)


# ----------------------------------------------------------------------------------- Pinocchio
def _assert_backends_agree(compiled, rng, payload, friction, samples=25):
    mj = make_dynamics(compiled, "mujoco", payload_mass=payload, viscous_friction=friction)
    pn = make_dynamics(compiled, "pinocchio", payload_mass=payload, viscous_friction=friction)
    assert isinstance(pn, PinocchioDynamics) and pn.describe()["backend"] == "pinocchio"
    n = compiled.dof
    lo, hi = compiled.position_limits
    for _ in range(samples):
        q = rng.uniform(np.maximum(lo, -3.0), np.minimum(hi, 3.0))
        qd = rng.uniform(-3.0, 3.0, n)
        qdd = rng.uniform(-20.0, 20.0, n)
        np.testing.assert_allclose(pn.gravity_torque(q), mj.gravity_torque(q), atol=1e-6, rtol=0)
        np.testing.assert_allclose(pn.mass_matrix(q), mj.mass_matrix(q), atol=1e-6, rtol=0)
        np.testing.assert_allclose(pn.coriolis_torque(q, qd), mj.coriolis_torque(q, qd), atol=1e-6, rtol=0)
        np.testing.assert_allclose(pn.inverse_dynamics(q, qd, qdd), mj.inverse_dynamics(q, qd, qdd), atol=1e-6, rtol=0)


@needs_pin
@pytest.mark.parametrize("seed", range(10))
def test_pinocchio_agrees_with_mujoco_on_random_chains(tmp_path, seed):
    n = 3 + seed % 5  # 3 to 7 joints
    compiled, rng = _chain(tmp_path, 100 + seed, n, subset=seed >= 5)
    friction = rng.uniform(0.0, 1.0, compiled.dof)
    _assert_backends_agree(compiled, rng, payload=float(rng.uniform(0.0, 3.0)), friction=friction)


@needs_pin
def test_pinocchio_agrees_with_mujoco_on_the_builtin_arm(arm):
    _assert_backends_agree(arm, np.random.default_rng(0), payload=0.7, friction=[0.5, 0.3], samples=50)
    pn = make_dynamics(arm, "pinocchio", payload_mass=0.3)
    ref = ArmModel(payload_mass=_own_payload_mass() + 0.3)
    q = np.array([0.5, -1.0])
    np.testing.assert_allclose(pn.gravity_torque(q), ref.gravity_torque(q), atol=1e-9)
    assert pn.with_payload(1.0).payload_mass == 1.0


@needs_pin
def test_pinocchio_sees_armature(tmp_path):
    text = description_path("arm.mjcf.xml").read_text().replace('<joint name="shoulder"',
                                                                '<joint name="shoulder" armature="0.4"')
    path = tmp_path / "arm.xml"
    path.write_text(text)
    compiled = compile_robot(path)
    _assert_backends_agree(compiled, np.random.default_rng(1), payload=0.0, friction=None, samples=10)
    pn = make_dynamics(compiled, "pinocchio")
    plain = make_dynamics(compile_robot(description_path("arm.mjcf.xml")), "pinocchio")
    np.testing.assert_allclose(pn.mass_matrix([0.1, 0.2])[0, 0] - plain.mass_matrix([0.1, 0.2])[0, 0], 0.4)


def test_dynamics_bench_runs_and_reports_against_its_floor(tmp_path, capsys):
    from residual_control.harness import dynamics_bench

    out = tmp_path / "bench.json"
    assert dynamics_bench.main(["--dof", "4", "--blocks", "3", "--block", "5", "--backend", "mujoco",
                                "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dof"] == 4 and result["backends"] == ["mujoco"]
    cases = {r["case"]: r for r in result["rows"]}
    assert result["floor"] in cases and cases[result["floor"]]["ratio_to_floor"] == pytest.approx(1.0)
    for name in ("mujoco.gravity_torque", "mujoco.inverse_dynamics", "mujoco.mass_matrix"):
        assert cases[name]["median_us"] > 0 and np.isfinite(cases[name]["ratio_to_floor"])
    assert "mujoco.gravity_torque" in capsys.readouterr().out
    assert dynamics_bench.main(["--description", str(tmp_path / "absent.urdf")]) == 2


@needs_pin
def test_pinocchio_follows_a_description_without_gravity(tmp_path):
    text = description_path("arm.mjcf.xml").read_text().replace(
        '<option timestep="0.001"', '<option><flag gravity="disable"/></option>\n  <option timestep="0.001"')
    path = tmp_path / "arm.xml"
    path.write_text(text)
    compiled = compile_robot(path)
    assert compiled.model.opt.disableflags & int(mujoco.mjtDisableBit.mjDSBL_GRAVITY)
    for backend in ("mujoco", "pinocchio"):
        np.testing.assert_allclose(make_dynamics(compiled, backend).gravity_torque([0.3, 0.4]), 0.0, atol=1e-12)
