"""arm.mjcf.xml vs arm.urdf vs ArmModel consistency."""
import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from support.planar_arm import JOINT_NAMES, NOMINAL_DAMPING, NOMINAL_FRICTIONLOSS, ArmModel
from residual_control.paths import description_path
from residual_control.robot.folder import load_robot


@pytest.fixture(scope="module")
def mj():
    model = mujoco.MjModel.from_xml_path(str(description_path("arm.mjcf.xml")))
    return model, mujoco.MjData(model)


@pytest.fixture(scope="module")
def urdf():
    return ET.parse(description_path("arm.urdf")).getroot()


def _vec(text):
    return np.array([float(x) for x in text.split()])


def _body(model, name):
    return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)


def test_description_files_found():
    assert description_path("arm.mjcf.xml").is_file()
    assert description_path("arm.urdf").is_file()
    with pytest.raises(FileNotFoundError, match="expected"):
        description_path("no_such_file.xml")


def test_mjcf_basics(mj):
    model, _ = mj
    assert model.opt.timestep == pytest.approx(0.001)
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    names = tuple(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, i) for i in range(model.njnt))
    assert names == JOINT_NAMES
    assert model.nu == 2 and np.allclose(model.actuator_gear[:, 0], 1.0)
    assert np.allclose(model.actuator_ctrlrange, [[-60, 60], [-30, 30]])
    assert np.allclose(model.dof_damping, NOMINAL_DAMPING)
    assert np.allclose(model.dof_frictionloss, NOMINAL_FRICTIONLOSS)
    assert np.allclose(model.jnt_range, [[-3, 3], [-3, 3]])
    # The payload body is the massless mount of the payload the plant adds (robots/planar2: payload_link).
    assert model.body_mass[_body(model, "payload")] == 0.0


def test_urdf_matches_mjcf(mj, urdf):
    model, _ = mj
    joints = {j.get("name"): j for j in urdf.findall("joint")}
    revolute = [j for j in urdf.findall("joint") if j.get("type") == "revolute"]
    assert tuple(j.get("name") for j in revolute) == JOINT_NAMES
    links = {link.get("name"): link for link in urdf.findall("link")}
    for i, name in enumerate(JOINT_NAMES):
        j = joints[name]
        assert np.allclose(_vec(j.find("axis").get("xyz")), model.jnt_axis[i])
        limit = j.find("limit")
        assert float(limit.get("lower")) == pytest.approx(model.jnt_range[i, 0])
        assert float(limit.get("upper")) == pytest.approx(model.jnt_range[i, 1])
        assert float(limit.get("effort")) == pytest.approx(model.actuator_ctrlrange[i, 1])
        dyn = j.find("dynamics")
        assert float(dyn.get("damping")) == pytest.approx(model.dof_damping[i])
        assert float(dyn.get("friction")) == pytest.approx(model.dof_frictionloss[i])
        child = j.find("child").get("link")
        body = model.jnt_bodyid[i]
        assert mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body) == child
        # joint origin = body position in its parent
        assert np.allclose(_vec(j.find("origin").get("xyz")), model.body_pos[body])
    assert joints["payload_mount"].get("type") == "fixed"
    assert np.allclose(_vec(joints["payload_mount"].find("origin").get("xyz")),
                       model.body_pos[_body(model, "payload")])
    for name in ("link1", "link2", "payload"):
        inertial = links[name].find("inertial")
        b = _body(model, name)
        # arm.urdf (Gazebo) carries the nominal payload on its payload link; the MJCF's mount is massless
        # and the plant adds the payload there (PlantParams.payload_mass, nominal = the robot's payload_mass).
        mass = model.body_mass[b] if name != "payload" else load_robot().payload_mass
        assert float(inertial.find("mass").get("value")) == pytest.approx(mass)
        assert np.allclose(_vec(inertial.find("origin").get("xyz")), model.body_ipos[b])
        inertia = inertial.find("inertia")
        diag = [float(inertia.get(k)) for k in ("ixx", "iyy", "izz")]
        assert np.allclose(diag, model.body_inertia[b], rtol=1e-9, atol=1e-12)
        assert all(float(inertia.get(k)) == 0.0 for k in ("ixy", "ixz", "iyz"))
        assert np.allclose(model.body_iquat[b], [1, 0, 0, 0])


def test_mjcf_matches_arm_model_parameters(mj):
    model, _ = mj
    arm = ArmModel()
    l1, l2, p = (_body(model, n) for n in ("link1", "link2", "payload"))
    assert model.body_pos[l2][0] == pytest.approx(arm.link_lengths[0])
    assert model.body_pos[p][0] == pytest.approx(arm.link_lengths[1])
    assert np.allclose(model.body_mass[[l1, l2]], arm.link_masses)
    assert np.allclose(model.body_ipos[[l1, l2], 0], arm.com_offsets)
    assert np.allclose(model.body_inertia[[l1, l2], 1], arm.link_inertias)  # about the hinge (y)
    assert np.allclose(model.opt.gravity, [0, 0, -arm.gravity])


def test_sign_convention(mj):
    model, data = mj
    tip = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "tip")
    data.qpos[:] = 0.0
    mujoco.mj_forward(model, data)
    assert np.allclose(data.site_xpos[tip], [0.9, 0.0, 0.0])  # horizontal along +x
    for q, z in (([0.2, 0.0], 0.9 * np.sin(0.2)), ([0.0, 0.3], 0.4 * np.sin(0.3))):
        data.qpos[:] = q
        mujoco.mj_forward(model, data)
        assert data.site_xpos[tip][2] == pytest.approx(z)  # positive angles lift
    data.qpos[:] = 0.0
    mujoco.mj_forward(model, data)
    assert np.all(data.qfrc_bias > 0)  # holding torque against gravity is positive


@pytest.mark.parametrize("payload", [0.2, 1.2])
def test_mujoco_dynamics_equal_arm_model(payload):
    model = mujoco.MjModel.from_xml_path(str(description_path("arm.mjcf.xml")))
    data = mujoco.MjData(model)
    model.body_mass[_body(model, "payload")] = payload
    arm = ArmModel(payload_mass=payload, viscous_friction=NOMINAL_DAMPING)
    rng = np.random.default_rng(7)
    for _ in range(8):
        q = rng.uniform(-3, 3, 2)
        data.qpos[:] = q
        data.qvel[:] = 0.0
        mujoco.mj_forward(model, data)
        m = np.zeros((2, 2))
        mujoco.mj_fullM(model, data, m)
        assert np.allclose(data.qfrc_bias, arm.gravity_torque(q), rtol=1e-6, atol=1e-8)
        assert np.allclose(m, arm.mass_matrix(q), rtol=1e-6, atol=1e-8)
        # with velocity: Coriolis (bias) + viscous damping (passive) = inverse dynamics at qdd = 0
        qd = rng.uniform(-2, 2, 2)
        data.qvel[:] = qd
        mujoco.mj_forward(model, data)
        expected = arm.inverse_dynamics(q, qd, np.zeros(2))
        assert np.allclose(data.qfrc_bias - data.qfrc_passive, expected, rtol=1e-5, atol=1e-6)
