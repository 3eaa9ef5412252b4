"""base_controller node: the trusted nominal controller, a_base = f(joint state, reference).

Subscribes ``joint_states`` and ``reference`` (sensor_msgs/JointState:
position and velocity setpoints), matched by joint name. Publishes
``base_action`` (sensor_msgs/JointState: name, effort = a_base,
header.stamp = the stamp of the joint state used) once per joint state.
Until a reference arrives it holds the first measured position. Gains can be
tuned live with ``ros2 param set``; the control law lives in
:mod:`residual_control.core.base_controllers`.
"""
from __future__ import annotations

from rclpy.node import Node
from sensor_msgs.msg import JointState

from ..core.base_controllers import make_base_controller
from ..robot.nominal import nominal_model
from ..core.errors import ConfigError, ObservationError
from ..core.params import BASE_PARAMS, spec_map
from ..core.step import ReferenceHold
from .conversions import read_or_reject, read_reference, read_state, stamp_to_sec
from .diagnostics import ERROR, OK, WARN, BaseCounters, Diagnostics
from .parameters import declare_specs, result, validate_changes
from .process import run_node
from .throttle import ThrottledWarning
from .qos import CONTROL_QOS


class BaseControllerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("base_controller", **kwargs)
        self._specs = spec_map(BASE_PARAMS)
        self._values = declare_specs(self, BASE_PARAMS)
        self._warn = ThrottledWarning(self.get_logger())
        self.controller = make_base_controller(self._values, nominal_model(self._values))
        self.joints = tuple(self._values["joints"])
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._reference = ReferenceHold(len(self.joints))  # the first measured position until a reference
        self._rejected = 0
        self._last_error = ""
        self._published = 0
        self._counters = BaseCounters()  # mpc: solves, fallbacks on /diagnostics

        self._pub = self.create_publisher(JointState, "base_action", CONTROL_QOS)
        self.create_subscription(JointState, "joint_states", self._on_joint_state, CONTROL_QOS)
        self.create_subscription(JointState, "reference", self._on_reference, CONTROL_QOS)
        self._diag = Diagnostics(self, "base_controller", hardware_id=self.get_fully_qualified_name())
        self.create_timer(float(self._values["diagnostics_period"]), self._publish_diagnostics)
        self._out = JointState(name=list(self.joints))
        self.get_logger().info(f"{self.controller.kind} on {list(self.joints)}")

    def _reject(self, error: str) -> None:
        self._rejected += 1
        self._last_error = error
        self._warn(error)

    def _on_reference(self, msg: JointState) -> None:
        reference = read_or_reject(self._reject, read_reference, self.joints, msg)
        if reference is not None:
            self._reference.set(*reference, stamp_to_sec(msg.header.stamp))

    def _on_joint_state(self, msg: JointState) -> None:
        state = read_or_reject(self._reject, read_state, self.joints, msg)
        if state is None:
            return
        q, qd = state
        q_ref, qd_ref, started = self._reference.resolve(q, stamp_to_sec(msg.header.stamp))
        if started:
            self.get_logger().info("no reference yet: holding the first measured position")
        try:
            tau = self.controller.compute(q, qd, q_ref, qd_ref, stamp_to_sec(msg.header.stamp))
        except ObservationError as exc:
            self._reject(str(exc))
            return
        self._out.header.stamp = msg.header.stamp
        self._out.effort = tau.tolist()
        self._pub.publish(self._out)
        self._published += 1

    def _publish_diagnostics(self) -> None:
        if self._rejected and self._last_error:
            level, message = ERROR if self._published == 0 else WARN, self._last_error
        elif not self._reference.received:  # holding the first measured position, or no joint state yet
            level, message = WARN, "no reference received: holding position"
        else:
            level, message = OK, "running"
        values = {
            "controller_type": self.controller.kind,
            "published": self._published,
            "rejected_inputs": self._rejected,
        }
        level, message = self._counters.add(self.controller, level, message, values)
        self._diag.publish(level, message, values)

    def _on_set_parameters(self, params):
        try:
            changes = validate_changes(self._specs, params)
            if changes:
                values = {**self._values, **changes}
                controller = make_base_controller(values, nominal_model(values))
                controller.carry_state_from(self.controller)  # a PID keeps its integral: no bump
                self._values.update(changes)
                self.controller = controller
                self._counters.reset()
        except (ConfigError, KeyError) as exc:
            return result(str(exc))
        return result()


def main(args=None) -> int:
    return run_node(BaseControllerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
