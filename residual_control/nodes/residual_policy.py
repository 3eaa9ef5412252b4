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

With ``base_action_type: float64_multi_array``, ``base_action`` is a
std_msgs/Float64MultiArray in the order of ``joints`` (a controller outside the
package, docs/external_base.md). It has no stamp to pair with a joint state:
the residual is computed from the latest joint state, provided it was received
within ``joint_state_timeout`` before the base action, and is stamped with that
joint state's stamp (the observation it was computed from, which the mixer's
``observation_timeout`` checks). One of the wrong length or with a non-finite
value is refused (``rejected_inputs``, a WARN status naming the problem).

The model is validated at start (refused with a clear error: the node exits
with status 2). Setting ``model_path`` (and ``model_sha256``) while running
loads and validates the new model in a worker thread, off the control path;
it replaces the running model only when valid, otherwise the parameters are
set back and the old model keeps running.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from rclpy.node import Node
from sensor_msgs.msg import JointState

from ..core.errors import ConfigError
from ..core.joints import order_by_name
from ..core.params import POLICY_PARAMS, spec_map
from .conversions import base_action_msg_type, now_sec, read_base_array, read_or_reject, read_state
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
        self._latest_received: float | None = None  # receipt time of the newest joint state (node clock)
        self._base_action_type = str(v["base_action_type"])
        self._pub = self.create_publisher(JointState, "residual_action", CONTROL_QOS)
        self.create_subscription(JointState, "joint_states", self._on_joint_state, CONTROL_QOS)
        # The model (refused: exit 2), reference, perception, ~/model.
        self.policy = PolicyIO(self, v, self.joints, self.stats, self._publish_diagnostics)
        on_base = self._on_base if self._base_action_type == "joint_state" else self._on_base_array
        self.create_subscription(base_action_msg_type(self._base_action_type), "base_action", on_base,
                                 CONTROL_QOS)
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
        self._states.move_to_end(key)
        self._latest_received = now_sec(self)
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
        self._publish(state, a_base, key, msg.header.stamp)

    def _on_base_array(self, msg) -> None:
        """Pair an unstamped base action (Float64MultiArray, ``joints`` order) with the latest joint state."""
        a_base = read_or_reject(self.policy.reject, read_base_array, self.joints, msg)
        if a_base is None:
            return
        now = now_sec(self)
        if not self._states or self._latest_received is None:
            return self.policy.skip(WARN, "no joint state received yet")
        age = now - self._latest_received
        if age > self._state_timeout:
            return self.policy.skip(WARN, f"latest joint state received {age:.3f} s before the base action "
                                          f"(joint_state_timeout {self._state_timeout:g} s)")
        if age < -self._state_timeout:  # the clock went back: that joint state is from before it
            return self.policy.skip(WARN, f"latest joint state received {-age:.3f} s after the base action: "
                                          f"the clock went back (joint_state_timeout {self._state_timeout:g} s)")
        key = next(reversed(self._states))
        stamp = TimeMsg()
        stamp.sec, stamp.nanosec = divmod(key, 1_000_000_000)
        self._publish(self._states[key], a_base, key, stamp)

    def _publish(self, state, a_base, key: int, stamp) -> None:
        """Publish the residual for ``state`` (stamped ``key`` ns) and ``a_base``, stamped ``stamp``."""
        residual, outcome = self.policy.residual_for(state[0], state[1], a_base, now_sec(self), key * 1e-9)
        if residual is None:
            return
        self._out.header.stamp = stamp
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
        error = self.policy.swap.request(changes)
        if error:  # refused as a whole: nothing of it applied
            return result(error)
        if "perception_timeout" in changes:
            self.policy.perception_timeout = float(changes["perception_timeout"])
        if "joint_state_timeout" in changes:
            self._state_timeout = float(changes["joint_state_timeout"])
        self.policy.set_envelope_params(changes)
        return result()


def main(args=None) -> int:
    return run_node(ResidualPolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
