"""A probe node: drives the graph's inputs and records everything it outputs.

Used by the graph tests, the demo's recorder, the fault matrix and the
benchmarks, so all of them judge the graph the same way: every command the
actuator side receives is checked against the safety invariants.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..nodes.qos import CONTROL_QOS, LATCHED_QOS

# The probe records samples with a deep queue but BEST_EFFORT: a reliable
# reader that falls behind makes Fast DDS writers wait for it (up to their
# max_blocking_time, 100 ms), which stalled the residual policy in the loop it
# was recording. A best-effort reader can drop samples; it never slows the graph.
RECORD_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)
# A probe that drives the graph itself (faults.Bench: it publishes the joint states at 50 Hz and
# spins between them) records reliably and keeps every sample: there it is never the slow reader.
DIAGNOSTICS_RECORD_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                                    reliability=ReliabilityPolicy.RELIABLE)
LOSSLESS_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class Sample:
    t: float  # receive time on the probe's monotonic clock, s
    ros_t: float  # receive time on the probe's ROS clock, s
    stamp: float | None
    names: list
    values: np.ndarray
    positions: np.ndarray | None = None


@dataclass
class Recording:
    base: list = field(default_factory=list)
    residual: list = field(default_factory=list)
    commands: list = field(default_factory=list)
    applied: list = field(default_factory=list)
    joint_states: list = field(default_factory=list)
    modes: list = field(default_factory=list)  # (t, ros_t, text)
    diagnostics: list = field(default_factory=list)  # (t, DiagnosticStatus)
    # (header stamp on the publisher's clock, mode) from every status that
    # reports a 'mode' (the mixer publishes one on each transition).
    mixer_modes: list = field(default_factory=list)

    def clear(self) -> None:
        for v in self.__dict__.values():
            v.clear()


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class Probe(Node):
    """Records the graph's topics; optionally publishes its inputs."""

    def __init__(self, joints: Sequence[str], name: str = "probe", namespace: str = "",
                 mixer: str = "residual_mixer", policy: str = "residual_policy",
                 record_joint_states: bool = False, record_qos: QoSProfile = RECORD_QOS, **kwargs) -> None:
        super().__init__(name, namespace=namespace, **kwargs)
        self.joints = list(joints)
        self.rec = Recording()
        self.mixer_name = mixer
        self.policy_name = policy
        self.js_pub = self.create_publisher(JointState, "joint_states", CONTROL_QOS)
        self.ref_pub = self.create_publisher(JointState, "reference", CONTROL_QOS)
        self.perception_pub = self.create_publisher(Float64MultiArray, "perception", CONTROL_QOS)
        self.residual_pub = self.create_publisher(JointState, "residual_action", CONTROL_QOS)
        self.base_pub = self.create_publisher(JointState, "base_action", CONTROL_QOS)
        self.create_subscription(JointState, "base_action", self._rec(self.rec.base), record_qos)
        self.create_subscription(JointState, "residual_action", self._rec(self.rec.residual), record_qos)
        self.create_subscription(JointState, f"{mixer}/applied_residual", self._rec(self.rec.applied), record_qos)
        self.create_subscription(Float64MultiArray, "commands", self._on_command, record_qos)
        self.create_subscription(String, f"{mixer}/mode", self._on_mode, LATCHED_QOS)
        # Every node's /diagnostics arrive here: a deep queue so that a probe slowed down by the
        # machine's load loses none of the mixer's transition reports (mixer_modes).
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, DIAGNOSTICS_RECORD_QOS)
        if record_joint_states:
            self.create_subscription(JointState, "joint_states", self._rec(self.rec.joint_states), RECORD_QOS)
        self._param_clients = {}
        self.mode_text = ""

    # ------------------------------------------------------------------ recording
    def _rec(self, sink):
        def cb(msg: JointState) -> None:
            sink.append(Sample(time.monotonic(), self.ros_now(), _stamp(msg), list(msg.name),
                               np.asarray(msg.effort, dtype=float), np.asarray(msg.position, dtype=float)))
        return cb

    def _on_command(self, msg: Float64MultiArray) -> None:
        self.rec.commands.append(Sample(time.monotonic(), self.ros_now(), None, self.joints,
                                        np.asarray(msg.data, dtype=float)))

    def _on_mode(self, msg: String) -> None:
        self.mode_text = msg.data
        self.rec.modes.append((time.monotonic(), self.ros_now(), msg.data))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            self.rec.diagnostics.append((time.monotonic(), s))
            mode = next((kv.value for kv in s.values if kv.key == "mode"), None)
            if mode is not None:
                self.rec.mixer_modes.append((_stamp(msg), mode))

    def drain(self, budget: float = 0.5) -> None:
        """Handle every message already waiting (so the probe's clock is current)."""
        deadline = time.monotonic() + budget
        for _ in range(500):
            rclpy.spin_once(self, timeout_sec=0.0)
            if time.monotonic() > deadline:
                break

    def ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    @property
    def mode(self) -> str:
        """The mixer's current mode (survives Recording.clear())."""
        return self.mode_text.split(":", 1)[0]

    # ------------------------------------------------------------------ publishing
    def stamp_now(self):
        return self.get_clock().now().to_msg()

    def publish_state(self, q, qd, names: Sequence[str] | None = None, stamp=None) -> JointState:
        msg = JointState(name=list(names or self.joints), position=[float(x) for x in q],
                         velocity=[float(x) for x in qd])
        msg.header.stamp = stamp if stamp is not None else self.stamp_now()
        self.js_pub.publish(msg)
        return msg

    def publish_reference(self, q_ref, qd_ref, names: Sequence[str] | None = None) -> None:
        msg = JointState(name=list(names or self.joints), position=[float(x) for x in q_ref],
                         velocity=[float(x) for x in qd_ref])
        msg.header.stamp = self.stamp_now()
        self.ref_pub.publish(msg)

    def publish_perception(self, values) -> None:
        self.perception_pub.publish(Float64MultiArray(data=[float(x) for x in values]))

    def publish_residual(self, names, values, stamp=None) -> None:
        msg = JointState(name=list(names))
        msg.effort = [float(x) for x in values]
        msg.header.stamp = stamp if stamp is not None else self.stamp_now()
        self.residual_pub.publish(msg)

    # ------------------------------------------------------------------ waiting
    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rclpy.spin_once(self, timeout_sec=0.01)
            if predicate():
                return True
        return bool(predicate())

    def spin_for(self, duration: float) -> None:
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            rclpy.spin_once(self, timeout_sec=0.01)

    # ------------------------------------------------------------------ parameters
    def _client(self, node: str, srv_type, srv: str):
        key = (node, srv)
        if key not in self._param_clients:
            self._param_clients[key] = self.create_client(srv_type, f"{node}/{srv}")
        return self._param_clients[key]

    def set_remote_parameter(self, node: str, name: str, value, timeout: float = 10.0):
        """SetParameters on a node; returns (successful, reason)."""
        client = self._client(node, SetParameters, "set_parameters")
        if not self.spin_until(client.service_is_ready, timeout):
            raise TimeoutError(f"{node}/set_parameters: service not available within {timeout} s")
        req = SetParameters.Request(parameters=[ParameterMsg(name=name, value=to_parameter_value(value))])
        future = client.call_async(req)
        if not self.spin_until(future.done, timeout):
            raise TimeoutError(f"{node}/set_parameters: no answer within {timeout} s")
        res = future.result().results[0]
        return res.successful, res.reason

    def get_remote_parameter(self, node: str, name: str, timeout: float = 10.0):
        client = self._client(node, GetParameters, "get_parameters")
        if not self.spin_until(client.service_is_ready, timeout):
            raise TimeoutError(f"{node}/get_parameters: service not available within {timeout} s")
        future = client.call_async(GetParameters.Request(names=[name]))
        if not self.spin_until(future.done, timeout):
            raise TimeoutError(f"{node}/get_parameters: no answer within {timeout} s")
        return from_parameter_value(future.result().values[0])


def to_parameter_value(value) -> ParameterValue:
    v = ParameterValue()
    if isinstance(value, bool):
        v.type, v.bool_value = ParameterType.PARAMETER_BOOL, value
    elif isinstance(value, int):
        v.type, v.integer_value = ParameterType.PARAMETER_INTEGER, value
    elif isinstance(value, float):
        v.type, v.double_value = ParameterType.PARAMETER_DOUBLE, value
    elif isinstance(value, str):
        v.type, v.string_value = ParameterType.PARAMETER_STRING, value
    elif isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value) and value:
        v.type, v.string_array_value = ParameterType.PARAMETER_STRING_ARRAY, list(value)
    elif isinstance(value, (list, tuple)) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                  for x in value):
        if value and all(isinstance(x, int) for x in value):
            v.type, v.integer_array_value = ParameterType.PARAMETER_INTEGER_ARRAY, list(value)
        else:
            v.type, v.double_array_value = ParameterType.PARAMETER_DOUBLE_ARRAY, [float(x) for x in value]
    else:
        raise TypeError(f"parameter value: expected bool, int, float, str or a list of one of them, found {value!r}")
    return v


def from_parameter_value(v: ParameterValue):
    t = v.type
    if t == ParameterType.PARAMETER_BOOL:
        return v.bool_value
    if t == ParameterType.PARAMETER_INTEGER:
        return v.integer_value
    if t == ParameterType.PARAMETER_DOUBLE:
        return v.double_value
    if t == ParameterType.PARAMETER_STRING:
        return v.string_value
    if t == ParameterType.PARAMETER_DOUBLE_ARRAY:
        return list(v.double_array_value)
    if t == ParameterType.PARAMETER_INTEGER_ARRAY:
        return list(v.integer_array_value)
    if t == ParameterType.PARAMETER_STRING_ARRAY:
        return list(v.string_array_value)
    return None


def command_violations(commands: Sequence[np.ndarray], cmd_min, cmd_max) -> int:
    """Commands that are non-finite or outside the limits."""
    lo, hi = np.asarray(cmd_min), np.asarray(cmd_max)
    bad = 0
    for c in commands:
        if c.shape != lo.shape or not np.all(np.isfinite(c)) or np.any(c < lo - 1e-9) or np.any(c > hi + 1e-9):
            bad += 1
    return bad


def isclose(a: float, b: float, tol: float = 1e-9) -> bool:
    return math.isclose(a, b, abs_tol=tol)
