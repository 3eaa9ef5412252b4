"""The mpc base on a node: it answers joint states and puts its counters on /diagnostics.

On base_controller (status ``base_controller``) and on the fused residual_controller (``residual_controller: base``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, Header

pytest.importorskip("osqp")

from residual_control.harness.graph import Graph, NodeSpec, wait_for  # noqa: E402
from residual_control.nodes.qos import CONTROL_QOS  # noqa: E402
from support import ROOT  # noqa: E402

PARAMS = str(ROOT / "config" / "residual_control_mpc.yaml")
JOINTS = ["shoulder", "elbow"]


#: node -> (the status with the base controller's counters, the topic of its output and the output's type)
NODES = {"base_controller": ("base_controller", "base_action", JointState),
         "residual_controller": ("residual_controller: base", "commands", Float64MultiArray)}


def _drive(budget: float, executable: str = "base_controller"):
    """Run the node with ``budget``; feed joint states at ~50 Hz until it reported a status with solves."""
    owns = not rclpy.ok()
    if owns:
        rclpy.init()
    try:
        return _drive_node(budget, executable)
    finally:
        if owns:  # leave rclpy as found: the next module's rclpy.init() must not find it initialized
            rclpy.shutdown()


def _drive_node(budget: float, executable: str):
    node = rclpy.create_node("test_mpc_base_driver")
    actions, statuses = [], []
    status_name, topic, msg_type = NODES[executable]
    node.create_subscription(msg_type, topic, lambda m: actions.append(list(m.effort if msg_type is JointState
                                                                              else m.data)), CONTROL_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: statuses.extend(s for s in m.status if s.name == status_name), 10)
    js_pub = node.create_publisher(JointState, "joint_states", CONTROL_QOS)
    ref_pub = node.create_publisher(JointState, "reference", CONTROL_QOS)
    k = [0]

    def spin():
        rclpy.spin_once(node, timeout_sec=0.02)
        t = node.get_clock().now().to_msg()
        w = 0.02 * k[0]
        k[0] += 1
        ref_pub.publish(JointState(header=Header(stamp=t), name=JOINTS,
                                   position=[0.4, 1.1], velocity=[0.0, 0.0]))
        js_pub.publish(JointState(header=Header(stamp=t), name=JOINTS,
                                  position=[0.3 + 0.05 * math.sin(w), 1.2], velocity=[0.05 * math.cos(w), 0.0]))

    def values(s: DiagnosticStatus) -> dict:
        return {kv.key: kv.value for kv in s.values}

    def solved() -> bool:
        return any(int(values(s).get("mpc_solves", "0")) >= 20 for s in statuses)

    try:
        with Graph([NodeSpec(executable, [PARAMS], {"mpc.solve_time_budget": budget})]) as graph:
            ok = wait_for(solved, timeout=60.0, spin=spin)
            graph.check_alive()
    finally:
        node.destroy_node()
    assert ok, f"no /diagnostics status with 20 mpc solves; saw {[values(s) for s in statuses][-3:]}"
    return actions, [(s.level, s.message, values(s)) for s in statuses]


@pytest.mark.parametrize("executable", list(NODES))
def test_the_mpc_base_answers_and_reports_its_solves(executable):
    actions, statuses = _drive(1.0, executable)  # no solve of a loaded machine is late: no fallback
    assert actions and all(np.all(np.isfinite(a)) and abs(a[0]) <= 60.0 and abs(a[1]) <= 30.0 for a in actions)
    level, message, v = statuses[-1]
    assert v["controller_type"] == "mpc" and v["mpc_fallbacks"] == "0", v
    assert float(v["mpc_last_solve_time_ms"]) > 0.0
    assert level == DiagnosticStatus.OK, (level, message)


@pytest.mark.parametrize("executable", list(NODES))
def test_every_solve_over_a_tiny_budget_is_a_counted_fallback_on_diagnostics(executable):
    actions, statuses = _drive(1e-9, executable)
    assert actions and all(np.all(np.isfinite(a)) for a in actions)
    level, message, v = statuses[-1]
    assert int(v["mpc_fallbacks"]) == int(v["mpc_solves"]) >= 20, v
    assert "budget" in v["mpc_last_fallback_reason"] or "time limit" in v["mpc_last_fallback_reason"], v
    assert any(lvl == DiagnosticStatus.WARN and "fallback" in msg for lvl, msg, _ in statuses), statuses[-3:]
