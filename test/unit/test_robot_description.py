"""compile_robot: URDF and MJCF descriptions compiled for the package, and the errors it refuses with."""
from __future__ import annotations

import re
import sys

import mujoco
import numpy as np
import pytest

from residual_control.paths import description_path
from residual_control.robot import CompiledRobot, DescriptionError, compile_robot, urdf_joint_limits
from support.chains import random_chain_urdf, write_chain_package


def _write(tmp_path, text, name="robot.urdf"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _joint_effort(urdf_text: str) -> dict:
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'<joint name="(\w+)" type="revolute">.*?effort="([^"]+)"', urdf_text, flags=re.S)}


# ----------------------------------------------------------------------------------- URDF
def test_urdf_with_package_meshes_resolves_through_package_paths(tmp_path):
    urdf = write_chain_package(tmp_path / "share", np.random.default_rng(3), 4)
    robot = compile_robot(urdf, package_paths=[tmp_path / "share"], payload_link="tool0")
    assert isinstance(robot, CompiledRobot)
    assert robot.kind == "urdf"
    assert robot.joint_names == ("j1", "j2", "j3", "j4")
    assert robot.model.nmesh == 4  # the collision meshes, loaded from the package folder
    assert robot.model.njnt == 4 and robot.model.nu == 4
    assert robot.model.opt.timestep == pytest.approx(0.001)
    assert robot.model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    # The package folder itself works as a package path too.
    again = compile_robot(urdf, package_paths=[tmp_path / "share" / "chain_description"])
    assert again.model.nmesh == 4


def test_urdf_missing_mesh_is_named(tmp_path):
    urdf = write_chain_package(tmp_path / "share", np.random.default_rng(4), 3)
    (tmp_path / "share" / "chain_description" / "meshes" / "link2.stl").unlink()
    with pytest.raises(DescriptionError) as err:
        compile_robot(urdf, package_paths=[tmp_path / "share"])
    text = str(err.value)
    assert "package://chain_description/meshes/link2.stl" in text
    assert "link1.stl" not in text and "link3.stl" not in text  # only what is missing
    assert str(tmp_path / "share") in text  # the folders searched
    with pytest.raises(DescriptionError, match=r"3 missing.*link1\.stl.*link2\.stl.*link3\.stl.*--package-path"):
        compile_robot(urdf)  # no package path: every mesh unresolved


def test_urdf_without_actuators_gets_torque_motors(tmp_path):
    text = random_chain_urdf(np.random.default_rng(5), 5)
    robot = compile_robot(_write(tmp_path, text))
    m = robot.model
    effort = _joint_effort(text)
    assert m.nu == 5
    for i, name in enumerate(robot.joint_names):
        a = robot.actuator_ids[i]
        assert m.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT
        assert m.actuator_trnid[a, 0] == robot.joint_ids[i]
        assert m.actuator_biastype[a] == mujoco.mjtBias.mjBIAS_NONE  # a motor, not a servo
        assert m.actuator_ctrllimited[a]
        np.testing.assert_allclose(m.actuator_ctrlrange[a], [-effort[name], effort[name]], rtol=1e-6)
        assert robot.effort_limits[i] == pytest.approx(effort[name], rel=1e-6)
        assert robot.actuator_gear[i] == 1.0
    limits = urdf_joint_limits(tmp_path / "robot.urdf")
    assert set(limits) == set(robot.joint_names)
    for i, name in enumerate(robot.joint_names):
        assert robot.position_limits[0][i] == pytest.approx(limits[name]["lower"], rel=1e-6)
        assert robot.position_limits[1][i] == pytest.approx(limits[name]["upper"], rel=1e-6)
        assert 1.0 <= limits[name]["velocity"] <= 3.0
    dmp = {m_.group(1): float(m_.group(2)) for m_ in re.finditer(
        r'<joint name="(\w+)" type="revolute">.*?damping="([^"]+)"', text, flags=re.S)}
    np.testing.assert_allclose(robot.damping, [dmp[n] for n in robot.joint_names], rtol=1e-6)


def test_urdf_joint_without_effort_limit_is_refused(tmp_path):
    text = random_chain_urdf(np.random.default_rng(6), 3)
    text = re.sub(r'(<joint name="j2".*?)effort="[^"]+"', r"\1", text, flags=re.S)
    with pytest.raises(DescriptionError, match=r"joint 'j2' has no actuator and no effort limit"):
        compile_robot(_write(tmp_path, text))
    # Leaving j2 out welds it, and then no effort limit is needed.
    robot = compile_robot(tmp_path / "robot.urdf", joints=["j1", "j3"])
    assert robot.joint_names == ("j1", "j3")


def test_joint_subset_welds_the_rest_in_the_given_order(tmp_path):
    text = random_chain_urdf(np.random.default_rng(7), 6)
    full = compile_robot(_write(tmp_path, text))
    robot = compile_robot(tmp_path / "robot.urdf", joints=["j5", "j2", "j3"])
    m = robot.model
    assert robot.joint_names == ("j5", "j2", "j3")
    assert m.njnt == 3 and m.nq == 3 and m.nv == 3 and m.nu == 3
    names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in robot.joint_ids]
    assert names == ["j5", "j2", "j3"]
    assert any("welded" in n and "j1" in n for n in robot.notes)
    # Welding keeps every body and its mass.
    assert m.nbody == full.model.nbody
    assert np.sum(m.body_mass) == pytest.approx(np.sum(full.model.body_mass))
    # q in joint_names order reaches the right joint: set j5 only, and only link5's frame turns.
    d = mujoco.MjData(m)
    q = np.array([0.7, 0.0, 0.0])
    d.qpos[robot.qpos_ids] = q
    mujoco.mj_kinematics(m, d)
    d0 = mujoco.MjData(m)
    mujoco.mj_kinematics(m, d0)
    body5 = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "link5")
    body4 = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "link4")
    assert np.allclose(d.xquat[body4], d0.xquat[body4])
    assert not np.allclose(d.xquat[body5], d0.xquat[body5])


def test_mimic_joints_are_left_out_by_default(tmp_path):
    text = random_chain_urdf(np.random.default_rng(8), 3)
    text = text.replace('<joint name="j3" type="revolute">',
                        '<joint name="j3" type="revolute">\n    <mimic joint="j2" multiplier="1" offset="0"/>')
    robot = compile_robot(_write(tmp_path, text))
    assert robot.joint_names == ("j1", "j2")
    assert robot.model.neq == 0 and robot.model.njnt == 2


def test_unknown_joint_is_refused_with_the_available_ones(tmp_path):
    p = _write(tmp_path, random_chain_urdf(np.random.default_rng(9), 3))
    with pytest.raises(DescriptionError, match=r"joint 'elbow' not found: expected one of .*\['j1', 'j2', 'j3'\]"):
        compile_robot(p, joints=["j1", "elbow"])
    with pytest.raises(DescriptionError, match=r"each joint once.*'j1'"):
        compile_robot(p, joints=["j1", "j1"])


def test_missing_inertia_is_refused_naming_the_link(tmp_path):
    text = random_chain_urdf(np.random.default_rng(10), 4)
    text = re.sub(r'(<link name="link3">)\s*<inertial>.*?</inertial>', r"\1", text, flags=re.S)
    with pytest.raises(DescriptionError, match=r"robot\.urdf: link 'link3' moves but has no mass"):
        compile_robot(_write(tmp_path, text))


def test_non_physical_inertia_is_refused_naming_the_link(tmp_path):
    text = random_chain_urdf(np.random.default_rng(11), 3)
    text = re.sub(r'(<link name="link2">.*?)ixx="[^"]+"', r'\1ixx="-1"', text, count=1, flags=re.S)
    with pytest.raises(DescriptionError, match=r"link 'link2' has a non-physical inertia"):
        compile_robot(_write(tmp_path, text))


def test_bad_payload_link_is_refused_with_the_links(tmp_path):
    p = _write(tmp_path, random_chain_urdf(np.random.default_rng(12), 3))
    with pytest.raises(DescriptionError, match=r"payload link 'gripper' not found: expected one of the links "
                                               r"\['base_link', 'link1', 'link2', 'link3', 'tool0'\]"):
        compile_robot(p, payload_link="gripper")


def test_payload_body_is_massless_and_carries_a_runtime_mass(tmp_path):
    p = _write(tmp_path, random_chain_urdf(np.random.default_rng(13), 4))
    robot = compile_robot(p, payload_link="tool0")
    m = robot.model
    pid = robot.payload_body_id
    assert m.body_mass[pid] == 0.0
    tool = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "tool0")
    assert m.body_parentid[pid] == tool
    d = mujoco.MjData(m)
    d.qpos[:] = 0.3
    mujoco.mj_forward(m, d)
    g0 = d.qfrc_bias.copy()
    m.body_mass[pid] = 2.0
    mujoco.mj_forward(m, d)
    assert np.max(np.abs(d.qfrc_bias - g0)) > 1e-3  # the payload's weight reaches the joints


def test_floating_base_is_refused(tmp_path):
    text = random_chain_urdf(np.random.default_rng(14), 3).replace(
        '<joint name="j1" type="revolute">', '<joint name="j1" type="floating">')
    with pytest.raises(DescriptionError, match=r"joint 'j1' is a free joint: expected a fixed-base arm"):
        compile_robot(_write(tmp_path, text))


def test_not_a_description_is_refused(tmp_path):
    with pytest.raises(DescriptionError, match=r"expected a URDF or MJCF file, found no such file"):
        compile_robot(tmp_path / "absent.urdf")
    with pytest.raises(DescriptionError,
                       match=r"expected a <robot> \(URDF\) or <mujoco> \(MJCF\) root element, found <sdf>"):
        compile_robot(_write(tmp_path, "<sdf/>", "x.sdf"))
    with pytest.raises(DescriptionError, match=r"timestep"):
        compile_robot(description_path("arm.mjcf.xml"), timestep=0.0)


# ----------------------------------------------------------------------------------- MJCF
def test_builtin_mjcf_keeps_its_motors():
    robot = compile_robot(description_path("arm.mjcf.xml"), payload_link="payload", timestep=0.002)
    m = robot.model
    assert robot.kind == "mjcf"
    assert robot.joint_names == ("shoulder", "elbow")
    assert m.nu == 2
    assert [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_ACTUATOR, a) for a in robot.actuator_ids] == [
        "shoulder_motor", "elbow_motor"]
    np.testing.assert_allclose(robot.effort_limits, [60.0, 30.0])
    np.testing.assert_allclose(robot.damping, [0.5, 0.3])
    np.testing.assert_allclose(robot.frictionloss, [0.8, 0.5])
    np.testing.assert_allclose(robot.position_limits[0], [-3.0, -3.0])
    np.testing.assert_allclose(robot.position_limits[1], [3.0, 3.0])
    assert m.opt.timestep == pytest.approx(0.002)
    # The description's bodies keep their masses; the added payload body is a massless child of "payload".
    raw = mujoco.MjModel.from_xml_path(str(description_path("arm.mjcf.xml")))
    for name in ("link1", "link2", "payload"):
        assert m.body(name).mass[0] == pytest.approx(raw.body(name).mass[0])
    own = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "payload")
    assert m.body_parentid[robot.payload_body_id] == own and m.body_mass[robot.payload_body_id] == 0.0
    assert m.nbody == raw.nbody + 1
    assert robot.notes == ()


def test_mjcf_motor_gear_scales_the_effort_limit(tmp_path):
    text = description_path("arm.mjcf.xml").read_text().replace(
        '<motor name="elbow_motor" joint="elbow" gear="1" ctrllimited="true" ctrlrange="-30 30"/>',
        '<motor name="elbow_motor" joint="elbow" gear="10" ctrllimited="true" ctrlrange="-2 2"/>')
    robot = compile_robot(_write(tmp_path, text, "arm.xml"))
    np.testing.assert_allclose(robot.actuator_gear, [1.0, 10.0])
    np.testing.assert_allclose(robot.effort_limits, [60.0, 20.0])


@pytest.mark.parametrize("servo, what", [
    ('<position name="elbow_motor" joint="elbow" kp="50" ctrlrange="-3 3"/>', r"a position servo \(kp 50\)"),
    ('<velocity name="elbow_motor" joint="elbow" kv="5" ctrlrange="-3 3"/>', r"a velocity servo \(kv 5\)"),
])
def test_mjcf_servo_actuators_are_refused(tmp_path, servo, what):
    text = description_path("arm.mjcf.xml").read_text().replace(
        '<motor name="elbow_motor" joint="elbow" gear="1" ctrllimited="true" ctrlrange="-30 30"/>', servo)
    with pytest.raises(DescriptionError,
                       match=rf"actuator 'elbow_motor' on joint 'elbow' is {what}: expected a torque motor"):
        compile_robot(_write(tmp_path, text, "arm.xml"))


def test_mjcf_joint_subset_drops_the_welded_joints_motor():
    robot = compile_robot(description_path("arm.mjcf.xml"), joints=["elbow"])
    assert robot.joint_names == ("elbow",)
    assert robot.model.nu == 1 and robot.model.njnt == 1
    assert mujoco.mj_id2name(robot.model, mujoco.mjtObj.mjOBJ_ACTUATOR, int(robot.actuator_ids[0])) == "elbow_motor"


def test_package_uris_resolve_through_the_ament_index(tmp_path, monkeypatch):
    """Where ament_index_python imports, package://PKG resolves to PKG's share folder."""
    import types

    urdf = write_chain_package(tmp_path / "share", np.random.default_rng(15), 3)
    share = tmp_path / "share" / "chain_description"
    asked = []

    class PackageNotFoundError(KeyError):
        pass

    def get_package_share_directory(name):
        asked.append(name)
        if name != "chain_description":
            raise PackageNotFoundError(name)
        return str(share)

    fake = types.ModuleType("ament_index_python.packages")
    fake.PackageNotFoundError = PackageNotFoundError
    fake.get_package_share_directory = get_package_share_directory
    monkeypatch.setitem(sys.modules, "ament_index_python", types.ModuleType("ament_index_python"))
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", fake)
    robot = compile_robot(urdf)  # no package path: the index finds it
    assert robot.model.nmesh == 3 and "chain_description" in asked
    (share / "meshes" / "link3.stl").unlink()
    with pytest.raises(DescriptionError, match=rf"link3\.stl.*Searched: {re.escape(str(share / 'meshes'))}"):
        compile_robot(urdf)


def test_xacro_is_refused_with_the_command_that_expands_it(tmp_path):
    text = random_chain_urdf(np.random.default_rng(16), 3).replace(
        '<robot name="random_chain">',
        '<robot name="random_chain" xmlns:xacro="http://www.ros.org/wiki/xacro">\n'
        '  <xacro:property name="l" value="0.3"/>')
    with pytest.raises(DescriptionError, match=r"expected a plain URDF, found xacro macros.*xacro robot\.urdf"):
        compile_robot(_write(tmp_path, text))
    # The namespace alone (as many expanded URDFs keep it) is fine.
    plain = random_chain_urdf(np.random.default_rng(16), 3).replace(
        '<robot name="random_chain">', '<robot name="random_chain" xmlns:xacro="http://www.ros.org/wiki/xacro">')
    assert compile_robot(_write(tmp_path, plain)).dof == 3


def test_gravcomp_is_removed_with_a_note(tmp_path):
    text = description_path("arm.mjcf.xml").read_text().replace('<body name="link2" pos="0.5 0 0">',
                                                                '<body name="link2" pos="0.5 0 0" gravcomp="1">')
    robot = compile_robot(_write(tmp_path, text, "arm.xml"))
    assert np.all(robot.model.body_gravcomp == 0.0)
    assert any("gravcomp" in n and "link2" in n for n in robot.notes)


def test_a_mimic_joint_with_its_leader_is_refused(tmp_path):
    text = random_chain_urdf(np.random.default_rng(17), 3).replace(
        '<joint name="j3" type="revolute">', '<joint name="j3" type="revolute">\n    <mimic joint="j2"/>')
    path = _write(tmp_path, text)
    with pytest.raises(DescriptionError,
                       match=r"joint 'j3' follows 'j2' through an equality \(mimic\).*leave 'j3' out"):
        compile_robot(path, joints=["j1", "j2", "j3"])
    # Without its leader the follower is an independent joint.
    assert compile_robot(path, joints=["j1", "j3"]).joint_names == ("j1", "j3")
