"""A base controller outside the package's nodes, for the ``external`` fault scenarios.

It stands for a team's own controller (a ros2_control controller, a vendor node): a separate process
that reads ``joint_states`` and ``reference``, runs the robot's base law (the params file's
base_controller section, through the core) on a timer of its own, and publishes it on its own
output topic, unstamped (std_msgs/Float64MultiArray in the order of ``joints``, what a
forward_command_controller takes) or stamped (sensor_msgs/JointState, effort, the stamp of the joint
state it was computed from). residual_policy and residual_mixer read it through the remapping
``base_action:=<topic>`` (docs/external_base.md). Harness only: nothing of the runtime imports it.

    python -m residual_control.harness.faults.external_base --params-file P [--type float64_multi_array]
        [--topic external_base/commands] [--rate-hz 50]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

MESSAGE_TYPES = ("float64_multi_array", "joint_state")
DEFAULT_TOPIC = "external_base/commands"


def main(argv=None) -> int:
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from ...core.base_controllers import make_base_controller
    from ...core.joints import order_by_name
    from ...nodes.qos import CONTROL_QOS
    from ...params_file import load, node_params
    from ...robot.nominal import nominal_model

    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []
    argv = argv[:len(argv) - len(ros_args)]
    ap = argparse.ArgumentParser(prog="external_base", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params-file", required=True, help="params file: its base_controller section is the law")
    ap.add_argument("--type", default="float64_multi_array", choices=MESSAGE_TYPES)
    ap.add_argument("--topic", default=DEFAULT_TOPIC)
    ap.add_argument("--rate-hz", type=float, default=50.0)
    args = ap.parse_args(argv)

    base_p = node_params(load(args.params_file), "base_controller")
    joints = [str(j) for j in base_p["joints"]]
    law = make_base_controller(base_p, nominal_model(base_p))

    class ExternalBase(Node):
        def __init__(self) -> None:
            super().__init__("external_base")
            self.state = None  # (q, qd, stamp msg)
            self.ref = None  # (q_ref, qd_ref)
            msg_type = Float64MultiArray if args.type == "float64_multi_array" else JointState
            self.pub = self.create_publisher(msg_type, args.topic, CONTROL_QOS)
            self.create_subscription(JointState, "joint_states", self._on_state, CONTROL_QOS)
            self.create_subscription(JointState, "reference", self._on_ref, CONTROL_QOS)
            self.create_timer(1.0 / args.rate_hz, self._tick)

        def _on_state(self, msg) -> None:
            try:
                self.state = (order_by_name(joints, msg.name, msg.position, "position"),
                              order_by_name(joints, msg.name, msg.velocity, "velocity"), msg.header.stamp)
            except ValueError as exc:
                self.get_logger().warning(str(exc), throttle_duration_sec=1.0)

        def _on_ref(self, msg) -> None:
            try:
                self.ref = (order_by_name(joints, msg.name, msg.position, "reference"),
                            np.zeros(len(joints)) if not len(msg.velocity)
                            else order_by_name(joints, msg.name, msg.velocity, "reference velocity"))
            except ValueError as exc:
                self.get_logger().warning(str(exc), throttle_duration_sec=1.0)

        def _tick(self) -> None:
            if self.state is None or self.ref is None:
                return
            q, qd, stamp = self.state
            t = self.get_clock().now().nanoseconds * 1e-9
            a = np.asarray(law.compute(q, qd, self.ref[0], self.ref[1], t), dtype=float)
            if args.type == "float64_multi_array":
                self.pub.publish(Float64MultiArray(data=a.tolist()))
            else:
                out = JointState(name=list(joints), effort=a.tolist())
                out.header.stamp = stamp
                self.pub.publish(out)

    rclpy.init(args=ros_args or None)
    node = ExternalBase()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
