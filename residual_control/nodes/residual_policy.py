"""residual_policy node: ONNX residual inference, da = pi(observation).

Subscribes ``joint_states``, ``reference``, ``base_action`` (the trigger) and,
when the model uses perception features, ``perception``
(std_msgs/Float64MultiArray). For each base action it assembles the
observation the model declares from the joint state with the same stamp, the
latest reference and the base action, and publishes ``residual_action``
(sensor_msgs/JointState: name, effort = da, header.stamp = the stamp of the
source observation). While perception is lost, an input is missing or the
model fails, it publishes nothing (the mixer falls back) and says why on
/diagnostics. The same holds while the observation has been outside the
model's training envelope (metadata ``observation_envelope``) for longer than
``envelope_debounce``: /diagnostics reports ``out_of_envelope`` with the
feature and how far it is outside (keys ``envelope``, ``envelope_feature``,
``envelope_excess``, ``envelope_trips``), and publishing resumes as soon as the
observation is back inside (the mixer then holds and ramps as usual). A model
without an envelope runs unchecked, with one warning at load.

The model is validated at start (refused with a clear error: the node exits
with status 2). Setting ``model_path`` (and ``model_sha256``) while running
loads and validates the new model in a worker thread, off the control path;
it replaces the running model only when valid, otherwise the parameters are
set back and the old model keeps running.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState

from ..core.errors import ConfigError
from ..core.joints import order_by_name
from ..core.params import POLICY_PARAMS, spec_map
from .conversions import now_sec, read_or_reject, read_state
from .diagnostics import OK, WARN, Diagnostics
from .parameters import declare_specs, result, validate_changes
from .policy_io import PolicyIO
from .process import run_node
from .qos import CONTROL_QOS

_STATE_BUFFER = 64


class ResidualPolicyNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("residual_policy", **kwargs)
        self._specs = spec_map(POLICY_PARAMS)
        v = declare_specs(self, POLICY_PARAMS)
        self.joints = tuple(v["joints"])
        self._state_timeout = float(v["joint_state_timeout"])
        self.stats = {"published": 0, "skipped": 0, "model_errors": 0, "rejected_inputs": 0}
        self._states: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._pub = self.create_publisher(JointState, "residual_action", CONTROL_QOS)
        self.create_subscription(JointState, "joint_states", self._on_joint_state, CONTROL_QOS)
        # The model (refused: exit 2), reference, perception, ~/model.
        self.policy = PolicyIO(self, v, self.joints, self.stats, self._publish_diagnostics)
        self.create_subscription(JointState, "base_action", self._on_base, CONTROL_QOS)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag = Diagnostics(self, "residual_policy", hardware_id=self.get_fully_qualified_name())
        self.create_timer(float(v["diagnostics_period"]), self._publish_diagnostics)
        self._out = JointState()
        self.policy.announce_model()

    # ------------------------------------------------------------------ inputs
    def _on_joint_state(self, msg: JointState) -> None:
        state = read_or_reject(self.policy.reject, read_state, self.joints, msg)
        if state is None:
            return
        key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self._states[key] = state
        while len(self._states) > _STATE_BUFFER:
            self._states.popitem(last=False)

    # ------------------------------------------------------------------ trigger
    def _on_base(self, msg: JointState) -> None:
        key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        state = self._states.get(key)
        if state is None and self._states:
            last_key = next(reversed(self._states))
            if abs(last_key - key) * 1e-9 <= self._state_timeout:
                state = self._states[last_key]
        if state is None:
            return self.policy.skip(WARN, "no joint state matching the base action's stamp")
        try:
            a_base = order_by_name(self.joints, msg.name, msg.effort, "base_action.effort")
        except ValueError as exc:
            return self.policy.skip(WARN, str(exc))
        residual, outcome = self.policy.residual_for(state[0], state[1], a_base, now_sec(self), key * 1e-9)
        if residual is None:
            return
        self._out.header.stamp = msg.header.stamp
        self._out.name = outcome.names
        self._out.effort = residual.tolist()
        self._pub.publish(self._out)
        self.stats["published"] += 1
        self.policy.status = (OK, "running")

    def _publish_diagnostics(self) -> None:
        level, message = self.policy.status
        self._diag.publish(level, message, self.policy.diagnostics_values())

    # ------------------------------------------------------------------ parameters
    def _on_set_parameters(self, params):
        if self.policy.swap.reverting:
            return result()
        try:
            changes = validate_changes(self._specs, params)
        except ConfigError as exc:
            return result(str(exc))
        if "perception_timeout" in changes:
            self.policy.perception_timeout = float(changes["perception_timeout"])
        if "joint_state_timeout" in changes:
            self._state_timeout = float(changes["joint_state_timeout"])
        error = self.policy.swap.request(changes)
        if not error:
            self.policy.set_envelope_params(changes)
        return result(error)


def main(args=None) -> int:
    return run_node(ResidualPolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
