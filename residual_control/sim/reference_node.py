"""ROS 2 node ``reference_publisher``: joint reference trajectory.

Publishes ``reference`` (sensor_msgs/JointState: name = ``joints``, position =
q_ref, velocity = qd_ref, header.stamp = node clock now) at ``rate_hz``.
Time is measured from the node's first timer tick on its own clock, so with
``use_sim_time: true`` the trajectory follows simulation time.

Parameters (read-only after start): ``joints``, ``rate_hz``, ``trajectory_type``
(sinusoid | min_jerk), ``center``, ``amplitude``, ``frequency_hz``, ``phase``
(sinusoid, one value per joint), ``waypoints`` (min_jerk, flattened row by row),
``segment_duration`` (s), ``cycle`` (min_jerk: repeat the waypoint loop).
See config/reference.yaml.
"""
from __future__ import annotations

import sys

from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import JointState

from residual_control.sim.trajectories import make_trajectory

from residual_control.nodes.process import run_node
from residual_control.nodes.qos import CONTROL_QOS


def _desc(description: str, low=None, high=None) -> ParameterDescriptor:
    d = ParameterDescriptor(description=description, read_only=True)
    if low is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    return d


class ReferencePublisher(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("reference_publisher", **kwargs)
        self.joints = list(self.declare_parameter(
            "joints", ["shoulder", "elbow"], _desc("joint names, order of the reference")).value)
        rate = float(self.declare_parameter(
            "rate_hz", 100.0, _desc("publication rate (Hz)", 0.1, 1000.0)).value)
        kind = str(self.declare_parameter(
            "trajectory_type", "sinusoid", _desc("sinusoid | min_jerk")).value)
        center = self.declare_parameter(
            "center", [0.3, 0.5], _desc("sinusoid centre per joint (rad)")).value
        amplitude = self.declare_parameter(
            "amplitude", [0.6, 0.7], _desc("sinusoid amplitude per joint (rad)")).value
        frequency = self.declare_parameter(
            "frequency_hz", [0.3, 0.5], _desc("sinusoid frequency per joint (Hz)")).value
        phase = self.declare_parameter(
            "phase", [0.0, 1.5708], _desc("sinusoid phase per joint (rad)")).value
        waypoints = self.declare_parameter(
            "waypoints", [0.0, 0.0, 0.9, 1.1, -0.3, 1.2, 0.6, -0.2],
            _desc("min_jerk waypoints (rad), flattened row by row, one value per joint")).value
        segment = float(self.declare_parameter(
            "segment_duration", 2.0, _desc("min_jerk duration of each segment (s)", 0.01, 3600.0)).value)
        cycle = bool(self.declare_parameter(
            "cycle", True, _desc("min_jerk: return to the first waypoint and repeat")).value)

        n = len(self.joints)
        if kind == "sinusoid":
            spec = {"type": kind, "center": list(center), "amplitude": list(amplitude),
                    "frequency_hz": list(frequency), "phase": list(phase)}
        elif kind == "min_jerk":
            spec = {"type": kind, "waypoints": list(waypoints), "n_joints": n,
                    "segment_duration": segment, "cycle": cycle}
        else:
            raise ValueError(f"trajectory_type: expected 'sinusoid' or 'min_jerk', found {kind!r}")
        self.trajectory = make_trajectory(spec)
        if self.trajectory.dof != n:
            raise ValueError(f"trajectory: expected {n} joints ({self.joints}), found {self.trajectory.dof}")

        self._t0 = None
        self._pub = self.create_publisher(JointState, "reference", CONTROL_QOS)
        self._timer = self.create_timer(1.0 / rate, self._on_timer)
        self.get_logger().info(f"reference_publisher: {kind} at {rate:g} Hz for {self.joints}")

    def _on_timer(self) -> None:
        now = self.get_clock().now()
        if self._t0 is None:
            self._t0 = now
        t = max(0.0, (now - self._t0).nanoseconds * 1e-9)
        q, qd, _qdd = self.trajectory.sample(t)
        msg = JointState()
        msg.header.stamp = now.to_msg()
        msg.name = list(self.joints)
        msg.position = q.tolist()
        msg.velocity = qd.tolist()
        self._pub.publish(msg)


def main(args=None) -> int:
    return run_node(ReferencePublisher, args, fatal=(ValueError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
