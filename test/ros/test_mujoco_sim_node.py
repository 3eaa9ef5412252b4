"""The mujoco_sim node, a short lockstep run: joint_states per command, /clock, the live parameter service."""
import contextlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from support.planar_arm import ArmModel

from support import ROOT as REPO
from support.processes import stop_group

pytestmark = pytest.mark.graph


@contextlib.contextmanager
def sim_and_tester(monkeypatch, params, name, offset=0):
    """Start mujoco_sim (``params``: -p NAME:=VALUE strings) on a private domain; yield (proc, node, executor)."""
    rclpy = pytest.importorskip("rclpy")
    domain = str(50 + (os.getpid() * 7919 + offset) % 150)
    monkeypatch.setenv("ROS_DOMAIN_ID", domain)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "residual_control.sim.mujoco_sim_node", "--ros-args"]
    for p in params:
        cmd += ["-p", p]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = None
    try:
        node = rclpy.create_node(name, context=context)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        yield proc, node, executor
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
        stop_group(proc)
        proc.stdout.close()


def test_mujoco_sim_node_lockstep(monkeypatch):
    pytest.importorskip("rclpy")
    from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    q0 = [0.3, 0.5]
    params = ["mode:=lockstep", "publish_clock:=true", "friction_scale:=0.0", "lockstep_wait:=0.5",
              f"initial_positions:=[{q0[0]}, {q0[1]}]"]
    with sim_and_tester(monkeypatch, params, "lockstep_tester") as (proc, node, executor):
        arm = ArmModel()
        kp, kd = np.array([60.0, 40.0]), np.array([6.0, 4.0])
        states, clocks = [], []
        pub = node.create_publisher(Float64MultiArray, "commands", 1)

        def on_state(msg):
            states.append(msg)
            if len(states) == 3:
                pub.publish(Float64MultiArray(data=[1.0, 2.0, 3.0]))  # wrong length: rejected
            q, qd = np.array(msg.position), np.array(msg.velocity)
            tau = arm.gravity_torque(q) + kp * (np.array(q0) - q) - kd * qd  # PD + gravity
            pub.publish(Float64MultiArray(data=tau.tolist()))

        node.create_subscription(JointState, "joint_states", on_state, 1)
        node.create_subscription(Clock, "/clock", lambda m: clocks.append(m), 10)
        client = node.create_client(SetParameters, "/mujoco_sim/set_parameters")

        def spin_until(cond, timeout):
            end = time.monotonic() + timeout
            while not cond() and time.monotonic() < end:
                assert proc.poll() is None, proc.stdout.read().decode()
                executor.spin_once(timeout_sec=0.05)
            return cond()

        assert spin_until(lambda: len(states) >= 200, 60.0), f"only {len(states)} joint_states"
        stamps = np.array([s.header.stamp.sec + 1e-9 * s.header.stamp.nanosec for s in states])
        assert np.allclose(np.diff(stamps), 0.01, atol=1e-6)  # one control period per step
        assert clocks
        # commands took effect: the arm settles at q0, effort = the applied (gravity) torque
        last = states[-1]
        assert np.allclose(last.position, q0, atol=2e-3), last.position
        assert np.allclose(last.effort, arm.gravity_torque(np.array(q0)), atol=0.2)
        assert list(last.name) == ["shoulder", "elbow"]

        # live plant parameter change through the parameter service
        assert client.wait_for_service(timeout_sec=10.0)

        def set_param(value):
            req = SetParameters.Request(parameters=[ParameterMsg(
                name="payload_mass",
                value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))])
            future = client.call_async(req)
            assert spin_until(future.done, 20.0)
            return future.result().results[0]

        assert not set_param(-1.0).successful
        assert set_param(1.0).successful
        n = len(states)
        assert spin_until(lambda: len(states) >= n + 100, 30.0)
        # with the heavier payload the nominal gravity compensation leaves a sag
        assert states[-1].position[1] < q0[1] - 1e-2, states[-1].position


def test_lockstep_waits_for_the_residual_of_each_state_while_the_policy_answers(monkeypatch):
    """lockstep_residual_topic: a late residual holds the next state back; a silent policy is not waited for."""
    pytest.importorskip("rclpy")
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray, Header

    params = ["mode:=lockstep", "publish_clock:=true", "lockstep_wait:=3.0", "lockstep_residual_topic:=residual_action"]
    with sim_and_tester(monkeypatch, params, "residual_wait_tester", offset=1) as (proc, node, executor):
        arm = ArmModel()
        pub = node.create_publisher(Float64MultiArray, "commands", 1)
        res_pub = node.create_publisher(JointState, "residual_action", 10)
        received = []   # (wall time, state stamp ns)
        held = {}       # state index -> wall time its residual is due

        def residual(stamp):
            res_pub.publish(JointState(header=Header(stamp=stamp), name=["shoulder", "elbow"], effort=[0.0, 0.0]))

        def on_state(msg):
            k = len(received)
            received.append((time.monotonic(), msg.header.stamp))
            pub.publish(Float64MultiArray(data=arm.gravity_torque(np.array(msg.position)).tolist()))
            if k == 20:
                held[k] = time.monotonic() + 0.8    # a late residual: the sim must wait for it
            elif k < 40 or k >= 70:
                residual(msg.header.stamp)           # 40..69: the policy is silent

        node.create_subscription(JointState, "joint_states", on_state, 10)

        def spin_until(cond, timeout):
            end = time.monotonic() + timeout
            while not cond() and time.monotonic() < end:
                assert proc.poll() is None, proc.stdout.read().decode()
                executor.spin_once(timeout_sec=0.02)
                for k, due in list(held.items()):
                    if time.monotonic() >= due:
                        residual(received[k][1])
                        held[k] = None
                        del held[k]
            return cond()

        assert spin_until(lambda: len(received) >= 90, 90.0), f"only {len(received)} joint_states"
        walls = [w for w, _ in received]
        # The late residual of state 20 held state 21 back (about 0.8 s, far below lockstep_wait 3 s).
        assert 0.6 <= walls[21] - walls[20] < 2.9, walls[21] - walls[20]
        # The silent policy: waited for once (lockstep_wait), then not again until it answers.
        assert walls[41] - walls[40] >= 2.9
        assert max(np.diff(walls[42:70])) < 2.0, np.diff(walls[42:70]).round(3).tolist()
