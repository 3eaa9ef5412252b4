"""residual_policy node: ONNX residual inference, da = pi(observation).

Subscribes ``joint_states``, ``reference``, ``base_action`` (the trigger) and,
when the model uses perception features, ``perception``
(std_msgs/Float64MultiArray). For each base action it assembles the
observation the model declares from the joint state with the same stamp, the
latest reference and the base action, and publishes ``residual_action``
(sensor_msgs/JointState: name, effort = da, header.stamp = the stamp of the
source observation). While perception is lost, an input is missing or the
model fails, it publishes nothing (the mixer falls back) and says why on
/diagnostics.

The model is validated at start (refused with a clear error: the node exits
with status 2). Setting ``model_path`` (and ``model_sha256``) while running
loads and validates the new model in a worker thread, off the control path;
it replaces the running model only when valid, otherwise the parameters are
set back and the old model keeps running.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String

from ..core.errors import ConfigError, ObservationError, PolicyOutputError, ResidualControlError
from ..core.observation import ObservationAssembler
from ..core.params import POLICY_PARAMS, spec_map
from ..core.policy import PolicyExpectations, PolicyRunner
from ..paths import default_model
from .common import ERROR, OK, WARN, Diagnostics, declare_specs, now_sec, order_by_name, result, run_node, \
    validate_changes
from .qos import CONTROL_QOS, LATCHED_QOS

_STATE_BUFFER = 64


class _Loaded:
    """A validated model and the observation assembly it needs (swapped as one)."""

    def __init__(self, path: str, sha256: str, expect: PolicyExpectations) -> None:
        self.runner = PolicyRunner(path, expect, sha256)
        self.assembler = ObservationAssembler(self.runner.contract.observation_names, expect.joints,
                                              expect.perception_features)
        self.path = path
        self.joint_names = list(self.runner.contract.joint_names)


class ResidualPolicyNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("residual_policy", **kwargs)
        self._specs = spec_map(POLICY_PARAMS)
        v = declare_specs(self, POLICY_PARAMS)
        self.joints = tuple(v["joints"])
        self._expect = PolicyExpectations(
            joints=self.joints, residual_limit=v["residual_limit"], control_rate_hz=v["control_rate_hz"],
            perception_features=tuple(v["perception_features"]))
        self._perception_timeout = float(v["perception_timeout"])
        self._state_timeout = float(v["joint_state_timeout"])
        path = v["model_path"] or str(default_model())
        self.model = _Loaded(path, v["model_sha256"], self._expect)
        self._model_params = (v["model_path"], v["model_sha256"])
        self._loading = False
        self._reverting = False
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._states: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._q_ref: np.ndarray | None = None
        self._qd_ref = np.zeros(len(self.joints))
        self._perception: np.ndarray | None = None
        self._perception_time: float | None = None
        self._status = (WARN, "waiting for inputs")
        self.stats = {"published": 0, "skipped": 0, "model_errors": 0, "rejected_inputs": 0}

        self._pub = self.create_publisher(JointState, "residual_action", CONTROL_QOS)
        self._model_pub = self.create_publisher(String, "~/model", LATCHED_QOS)
        self.create_subscription(JointState, "joint_states", self._on_joint_state, CONTROL_QOS)
        self.create_subscription(JointState, "reference", self._on_reference, CONTROL_QOS)
        self.create_subscription(JointState, "base_action", self._on_base, CONTROL_QOS)
        self.create_subscription(Float64MultiArray, "perception", self._on_perception, CONTROL_QOS)
        self._diag = Diagnostics(self, "residual_policy", hardware_id=self.get_fully_qualified_name())
        self.create_timer(float(v["diagnostics_period"]), self._publish_diagnostics)
        self._out = JointState()
        self._announce_model()

    def _announce_model(self) -> None:
        m = self.model
        self._model_pub.publish(String(data=f"{m.path} sha256={m.runner.sha256}"))
        self.get_logger().info(
            f"model {m.path} (sha256 {m.runner.sha256[:12]}…): {m.assembler.size} observations, "
            f"joints {m.joint_names}, perception {'used' if m.assembler.uses_perception else 'unused'}")

    # ------------------------------------------------------------------ inputs
    def _reject(self, error: str) -> None:
        self.stats["rejected_inputs"] += 1
        self._status = (WARN, error)
        self.get_logger().warn(error, throttle_duration_sec=1.0)

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            q = order_by_name(self.joints, msg.name, msg.position, "joint_states.position")
            qd = order_by_name(self.joints, msg.name, msg.velocity, "joint_states.velocity")
        except ValueError as exc:
            self._reject(str(exc))
            return
        key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self._states[key] = (q, qd)
        while len(self._states) > _STATE_BUFFER:
            self._states.popitem(last=False)

    def _on_reference(self, msg: JointState) -> None:
        try:
            self._q_ref = order_by_name(self.joints, msg.name, msg.position, "reference.position")
            self._qd_ref = (order_by_name(self.joints, msg.name, msg.velocity, "reference.velocity")
                            if len(msg.velocity) else np.zeros(len(self.joints)))
        except ValueError as exc:
            self._reject(str(exc))

    def _on_perception(self, msg: Float64MultiArray) -> None:
        n = len(self._expect.perception_features)
        data = np.asarray(msg.data, dtype=float)
        if data.size != n or not np.all(np.isfinite(data)):
            self._reject(f"perception: expected {n} finite features {list(self._expect.perception_features)}, "
                         f"found {data.tolist()[:8]}")
            return
        self._perception = data
        self._perception_time = now_sec(self)

    # ------------------------------------------------------------------ trigger
    def _skip(self, level: int, why: str) -> None:
        self.stats["skipped"] += 1
        self._status = (level, why)

    def _on_base(self, msg: JointState) -> None:
        model = self.model  # one read: a concurrent swap never mixes two models
        key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        state = self._states.get(key)
        if state is None and self._states:
            last_key = next(reversed(self._states))
            if abs(last_key - key) * 1e-9 <= self._state_timeout:
                state = self._states[last_key]
        if state is None:
            return self._skip(WARN, "no joint state matching the base action's stamp")
        if self._q_ref is None:
            return self._skip(WARN, "no reference received")
        perception = None
        if model.assembler.uses_perception:
            now = now_sec(self)
            if self._perception_time is None or now - self._perception_time > self._perception_timeout:
                age = "never received" if self._perception_time is None else \
                    f"last {now - self._perception_time:.3f} s ago"
                return self._skip(WARN, f"perception lost: {age} (perception_timeout {self._perception_timeout:g} s)")
            perception = self._perception
        try:
            a_base = order_by_name(self.joints, msg.name, msg.effort, "base_action.effort")
            obs = model.assembler.assemble(state[0], state[1], self._q_ref, self._qd_ref, a_base, perception)
            residual = model.runner.infer(obs)
        except (ValueError, ObservationError) as exc:
            return self._skip(WARN, str(exc))
        except PolicyOutputError as exc:
            self.stats["model_errors"] += 1
            return self._skip(ERROR, str(exc))
        except Exception as exc:  # onnxruntime failure: never crash the node, report it
            self.stats["model_errors"] += 1
            return self._skip(ERROR, f"inference failed: {type(exc).__name__}: {exc}")
        self._out.header.stamp = msg.header.stamp
        self._out.name = model.joint_names
        self._out.effort = residual.tolist()
        self._pub.publish(self._out)
        self.stats["published"] += 1
        self._status = (OK, "running")

    def _publish_diagnostics(self) -> None:
        level, message = self._status
        self._diag.publish(level, message, {"model_path": self.model.path,
                                            "model_sha256": self.model.runner.sha256, **self.stats})

    # ------------------------------------------------------------------ parameters
    def _on_set_parameters(self, params):
        if self._reverting:
            return result()
        try:
            changes = validate_changes(self._specs, params)
        except ConfigError as exc:
            return result(str(exc))
        if "perception_timeout" in changes:
            self._perception_timeout = float(changes["perception_timeout"])
        if "joint_state_timeout" in changes:
            self._state_timeout = float(changes["joint_state_timeout"])
        if "model_path" in changes or "model_sha256" in changes:
            if self._loading:
                return result("a model is being loaded; try again when it has switched or failed")
            path = changes.get("model_path", self._model_params[0])
            sha = changes.get("model_sha256", self._model_params[1])
            self._loading = True
            threading.Thread(target=self._load_model, args=(path, sha), daemon=True).start()
        return result()

    def _load_model(self, path: str, sha: str) -> None:
        old = self._model_params
        try:
            loaded = _Loaded(path or str(default_model()), sha, self._expect)
        except ResidualControlError as exc:
            self.get_logger().error(f"model update refused, keeping {self.model.path}: {exc}")
            self._status = (ERROR, f"model update refused: {exc}")
            self._reverting = True
            try:
                self.set_parameters([Parameter("model_path", value=old[0]),
                                     Parameter("model_sha256", value=old[1])])
            finally:
                self._reverting = False
                self._loading = False
            return
        self.model = loaded  # atomic swap
        self._model_params = (path, sha)
        self._loading = False
        self._announce_model()


def main(args=None) -> int:
    return run_node(ResidualPolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
