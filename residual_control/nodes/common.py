"""Shared helpers of the thin rclpy adapters: parameters, time, diagnostics, main()."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, String
from sensor_msgs.msg import JointState

from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from ..core.errors import describe, ConfigError, ObservationError, PolicyOutputError, ResidualControlError
from ..core.mixer import Mixer, MixerConfig, MixOutput, Mode
from ..core.observation import ObservationAssembler
from ..core.params import DOUBLE, DOUBLE_ARRAY, INTEGER, ParamSpec
from ..core.envelope import EnvelopeMonitor
from ..core.policy import PolicyExpectations, PolicyRunner
from .qos import CONTROL_QOS, DIAGNOSTICS_QOS, LATCHED_QOS

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR

_NUMERIC = (DOUBLE, DOUBLE_ARRAY, INTEGER)


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.doc, read_only=spec.read_only)
    if spec.kind in _NUMERIC:
        # Dynamic typing so `ros2 param set ... 1` (an integer) is accepted for a
        # double; the spec validates and converts, with a reason on rejection.
        d.dynamic_typing = True
        lo = "-inf" if spec.min is None else f"{spec.min:g}"
        hi = "inf" if spec.max is None else f"{spec.max:g}"
        d.additional_constraints = f"finite, {lo} <= value <= {hi}" + (" per element" if spec.kind == DOUBLE_ARRAY else "")
        if spec.kind == DOUBLE and spec.min is not None and spec.max is not None:
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max))]
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    return d


def _coerce_to_specs(specs: Mapping[str, ParamSpec], params: list[Parameter]) -> list[Parameter]:
    """Pre-set callback: integers set on a double (array) parameter become doubles before they are stored."""
    out = []
    for p in params:
        spec = specs.get(p.name)
        if spec is not None and p.type_ in (Parameter.Type.INTEGER, Parameter.Type.INTEGER_ARRAY):
            value = spec.coerce(p.value)
            if value is not p.value:
                p = Parameter(p.name, value=value)
        out.append(p)
    return out


def declare_specs(node: Node, specs: Sequence[ParamSpec]) -> dict[str, object]:
    """Declare every spec on the node and return the validated values (raises ConfigError).

    Double and double-array parameters are stored as doubles, also when a
    params file or ``ros2 param set`` gives integers (``[8, 4]``): the
    override is converted before it is declared, and a pre-set callback
    converts later sets (rclpy >= Jazzy; without it the value is still
    validated and used as doubles, only stored as given).
    """
    registry = getattr(node, "_residual_control_specs", None)
    if registry is None:
        registry = {}
        node._residual_control_specs = registry
        if hasattr(node, "add_pre_set_parameters_callback"):
            node.add_pre_set_parameters_callback(lambda params: _coerce_to_specs(registry, params))
    registry.update({s.name: s for s in specs})
    overrides = getattr(node, "_parameter_overrides", None)
    values = {}
    for spec in specs:
        d = descriptor(spec)
        try:
            if overrides is None:
                node.declare_parameter(spec.name, spec.default, d)
            else:
                override = overrides.get(spec.name)
                value = spec.default if override is None else spec.coerce(override.value)
                node.declare_parameter(spec.name, value, d, ignore_override=True)
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            # rclpy checks the descriptor's range/type first (an out-of-range or NaN
            # value in a params file): report it like every other bad value.
            override = (overrides or {}).get(spec.name)
            found = describe(override.value) if override is not None else "an invalid value"
            expected = d.additional_constraints or spec.kind
            raise ConfigError(f"parameter '{spec.name}': expected {expected}, found {found} ({exc})") from None
        values[spec.name] = spec.validate(node.get_parameter(spec.name).value)
    return values


def validate_changes(specs: Mapping[str, ParamSpec], params: Iterable[Parameter]) -> dict[str, object]:
    """Validate a SetParameters request against the specs (raises ConfigError)."""
    changes = {}
    for p in params:
        spec = specs.get(p.name)
        if spec is None:
            continue  # use_sim_time and other rclpy-owned parameters
        if spec.read_only:
            raise ConfigError(f"parameter '{p.name}': read-only: expected no change, found a request to set "
                              f"{describe(p.value)}")
        changes[p.name] = spec.validate(p.value)
    return changes


def result(error: str = "") -> SetParametersResult:
    return SetParametersResult(successful=not error, reason=error)


def stamp_to_sec(stamp: TimeMsg) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def now_sec(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


def order_by_name(joints: Sequence[str], names: Sequence[str], values: Sequence[float],
                  what: str) -> np.ndarray:
    """Values of a JointState field reordered to ``joints``; raises ValueError naming the problem."""
    if len(values) != len(names):
        raise ValueError(f"{what}: expected one value per name ({len(names)}), found {len(values)}")
    index = {n: i for i, n in enumerate(names)}
    if len(index) != len(names):
        raise ValueError(f"{what}: expected unique joint names, found {list(names)}")
    missing = [j for j in joints if j not in index]
    if missing:
        raise ValueError(f"{what}: expected joints {list(joints)}, missing {missing}")
    out = np.fromiter((values[index[j]] for j in joints), dtype=float, count=len(joints))
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{what}: expected finite values, found {out.tolist()}")
    return out


def read_state(joints: Sequence[str], msg) -> tuple[np.ndarray, np.ndarray]:
    """(q, qd) of a joint_states message ordered by ``joints``; raises ValueError."""
    return (order_by_name(joints, msg.name, msg.position, "joint_states.position"),
            order_by_name(joints, msg.name, msg.velocity, "joint_states.velocity"))


def read_reference(joints: Sequence[str], msg) -> tuple[np.ndarray, np.ndarray]:
    """(q_ref, qd_ref) of a reference message (no velocity: zeros); raises ValueError."""
    q_ref = order_by_name(joints, msg.name, msg.position, "reference.position")
    qd_ref = (order_by_name(joints, msg.name, msg.velocity, "reference.velocity")
              if len(msg.velocity) else np.zeros(len(joints)))
    return q_ref, qd_ref


def read_perception(features: Sequence[str], msg) -> np.ndarray:
    """The perception features of a Float64MultiArray; raises ValueError naming the problem."""
    n = len(features)
    data = np.asarray(msg.data, dtype=float)
    if data.size != n or not np.all(np.isfinite(data)):
        raise ValueError(f"perception: expected {n} finite features {list(features)}, found {data.tolist()[:8]}")
    return data


def perception_lost(now: float, received: float | None, timeout: float) -> str:
    """'' while perception is fresh, else why it is lost."""
    if received is not None and now - received <= timeout:
        return ""
    age = "never received" if received is None else f"last {now - received:.3f} s ago"
    return f"perception lost: {age} (perception_timeout {timeout:g} s)"


class LoadedPolicy:
    """A validated model, the observation assembly it needs and its envelope monitor (swapped as one)."""

    def __init__(self, path: str, sha256: str, expect: PolicyExpectations) -> None:
        self.runner = PolicyRunner(path, expect, sha256)
        self.assembler = ObservationAssembler(self.runner.contract.observation_names, expect.joints,
                                              expect.perception_features)
        self.path = path
        self.joint_names = list(self.runner.contract.joint_names)
        #: The model's training envelope (None: the model declares none) and its run-time check.
        self.envelope = self.runner.envelope
        self.monitor: EnvelopeMonitor | None = None
        self._margin: float | None = None
        self.configure_envelope(True, 0.1, 0.0)

    def configure_envelope(self, enabled: bool, debounce: float, margin: float) -> None:
        """Switch the envelope check on/off, set its debounce (s) and extra margin (fraction of each range)."""
        if self.envelope is None or not enabled:
            self.monitor = None
            return
        monitor = self.monitor
        if monitor is None or float(margin) != self._margin:
            monitor = EnvelopeMonitor(self.envelope.widened(float(margin)), float(debounce))
        monitor.debounce = float(debounce)
        self._margin = float(margin)
        self.monitor = monitor  # one assignment: the control path sees the old or the new monitor

    def residual(self, q, qd, q_ref, qd_ref, a_base, perception,
                 now: float | None = None) -> tuple[np.ndarray | None, int, str, bool]:
        """(residual, OK, '', False) or (None, level, why, is_model_error); never raises.

        With ``now`` (s) the observation is also checked against the training envelope:
        outside for longer than the debounce, there is no residual (WARN, ``out_of_envelope: ...``).
        """
        try:
            obs = self.assembler.assemble(q, qd, q_ref, qd_ref, a_base, perception)
            monitor = self.monitor
            if monitor is not None and now is not None:
                check = monitor.update(obs, now)
                if check.tripped:
                    return None, WARN, check.message, False
            return self.runner.infer(obs), OK, "", False
        except (ValueError, ObservationError) as exc:
            return None, WARN, str(exc), False
        except PolicyOutputError as exc:
            return None, ERROR, str(exc), True
        except Exception as exc:  # onnxruntime failure: never crash the node, report it
            return None, ERROR, f"inference failed: {type(exc).__name__}: {exc}", True


#: Above this size a model's SHA-256 pin is checked off the control path only (hashing blocks the executor).
SYNC_HASH_LIMIT_BYTES = 16 << 20


def model_file_problem(path: str, sha256: str) -> str:
    """What makes ``path`` unusable as a model, as far as it is checked at once; '' if nothing.

    A missing or unreadable file, and a ``sha256`` pin the file does not
    match (files up to SYNC_HASH_LIMIT_BYTES; the pin's format is checked by
    its ParamSpec). Loading the model (onnxruntime, metadata, contract) is
    left to the worker thread.
    """
    from ..core.policy import sha256_of

    if not path or not os.path.isfile(path):
        return f"model_path: expected an ONNX file, found no file at {path!r}"
    try:
        with open(path, "rb") as f:
            f.read(1)
        size = os.path.getsize(path)
    except OSError as exc:
        return f"model_path: expected a readable file, found {path!r} ({exc.strerror or exc})"
    if sha256 and size <= SYNC_HASH_LIMIT_BYTES:
        try:
            digest = sha256_of(path)
        except OSError as exc:
            return f"model_path: expected a readable file, found {path!r} ({exc.strerror or exc})"
        if digest.lower() != sha256.strip().lower():
            return f"model_sha256: expected {sha256.strip().lower()}, found {digest} for {path}"
    return ""


class ModelSwap:
    """Live replacement of a node's model via its ``model_path``/``model_sha256`` parameters.

    What can be checked at once (file missing or unreadable, the SHA-256 pin;
    :func:`model_file_problem`) refuses the parameter set itself. The new
    model is then loaded and validated in a worker thread, off the control
    path; ``on_loaded(loaded)`` swaps it in when valid, otherwise the
    parameters are set back and the old model keeps running.
    """

    def __init__(self, node: Node, expect: PolicyExpectations, path: str, sha256: str, default_path: Callable[[], str],
                 current: Callable[[], LoadedPolicy], on_loaded: Callable[[LoadedPolicy], None],
                 on_refused: Callable[[str], None]) -> None:
        self._node, self._expect, self._default = node, expect, default_path
        self._current, self._on_loaded, self._on_refused = current, on_loaded, on_refused
        self.params = (path, sha256)
        self.loading = False
        self.reverting = False

    def request(self, changes: Mapping[str, object]) -> str:
        """Start loading when the changes touch the model; returns an error or ''."""
        if "model_path" not in changes and "model_sha256" not in changes:
            return ""
        if self.loading:
            return "a model is being loaded; try again when it has switched or failed"
        path = changes.get("model_path", self.params[0])
        sha = changes.get("model_sha256", self.params[1])
        problem = model_file_problem(path or self._default(), sha)
        if problem:
            self._node.get_logger().warning(f"model update refused, keeping {self._current().path}: {problem}")
            return f"model update refused: {problem}"
        self.loading = True
        threading.Thread(target=self._load, args=(path, sha), daemon=True).start()
        return ""

    def _load(self, path: str, sha: str) -> None:
        old = self.params
        try:
            loaded = LoadedPolicy(path or self._default(), sha, self._expect)
        except ResidualControlError as exc:
            self._node.get_logger().error(f"model update refused, keeping {self._current().path}: {exc}")
            self._on_refused(f"model update refused: {exc}")
            # The request that started this load is stored only after the parameter callback
            # returned; a refusal faster than that would be overwritten by it. Wait for it first.
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and (self._node.get_parameter("model_path").value != path
                                                   or self._node.get_parameter("model_sha256").value != sha):
                time.sleep(0.005)
            self.reverting = True
            try:
                self._node.set_parameters([Parameter("model_path", value=old[0]),
                                           Parameter("model_sha256", value=old[1])])
            finally:
                self.reverting = False
                self.loading = False
            return
        self._on_loaded(loaded)  # atomic swap
        self.params = (path, sha)
        self.loading = False


class PolicyHost:
    """The policy side shared by residual_policy and residual_controller (mixed into a Node).

    Owns the model and its live swap, the ``reference`` and ``perception``
    inputs, the latched ``~/model`` topic, the training-envelope check and the
    policy's status; the node sets ``self.joints`` and ``self.stats`` and defines
    ``_publish_diagnostics``.
    """

    def init_policy(self, v: Mapping[str, object]) -> None:
        from ..paths import default_model

        self._expect = PolicyExpectations(
            joints=self.joints, residual_limit=v["residual_limit"], control_rate_hz=v["control_rate_hz"],
            perception_features=tuple(v["perception_features"]))
        self._perception_timeout = float(v["perception_timeout"])
        self._envelope_settings = (bool(v.get("envelope_check", True)), float(v.get("envelope_debounce", 0.1)),
                                   float(v.get("envelope_margin", 0.0)))
        self._envelope_tripped = False
        self._envelope_trips = 0
        self._envelope_trip_times: list[float] = []  # node-clock times of the latest trips (at most 16)
        self._envelope_last = "none"
        self.model = self._with_envelope(
            LoadedPolicy(v["model_path"] or str(default_model()), v["model_sha256"], self._expect))
        self._swap = ModelSwap(self, self._expect, v["model_path"], v["model_sha256"], lambda: str(default_model()),
                               lambda: self.model, self._on_model_loaded, self._on_model_refused)
        self._q_ref: np.ndarray | None = None
        self._qd_ref = np.zeros(len(self.joints))
        self._reference_received = False
        self._perception: np.ndarray | None = None
        self._perception_time: float | None = None
        self._status = (WARN, "waiting for inputs")
        self._model_update = "none"  # outcome of the last live model update (kept on /diagnostics)
        self._model_pub = self.create_publisher(String, "~/model", LATCHED_QOS)
        self.create_subscription(JointState, "reference", self._on_reference, CONTROL_QOS)
        self.create_subscription(Float64MultiArray, "perception", self._on_perception, CONTROL_QOS)

    def _announce_model(self) -> None:
        m = self.model
        self._model_pub.publish(String(data=f"{m.path} sha256={m.runner.sha256}"))
        self.get_logger().info(
            f"model {m.path} (sha256 {m.runner.sha256[:12]}…): {m.assembler.size} observations, "
            f"joints {m.joint_names}, perception {'used' if m.assembler.uses_perception else 'unused'}")

    def _with_envelope(self, loaded: LoadedPolicy) -> LoadedPolicy:
        """The model with the node's envelope settings; warns once (per model) when it declares no envelope."""
        loaded.configure_envelope(*self._envelope_settings)
        if loaded.envelope is None:
            self.get_logger().warning(
                f"model {loaded.path} declares no observation_envelope (exported before it was recorded): "
                f"running it without the training-envelope check; re-export it to get one")
        return loaded

    def set_envelope_params(self, changes: Mapping[str, object]) -> None:
        """Apply validated envelope_check / envelope_debounce / envelope_margin changes to the running model."""
        if not {"envelope_check", "envelope_debounce", "envelope_margin"} & set(changes):
            return
        enabled, debounce, margin = self._envelope_settings
        self._envelope_settings = (bool(changes.get("envelope_check", enabled)),
                                   float(changes.get("envelope_debounce", debounce)),
                                   float(changes.get("envelope_margin", margin)))
        self.model.configure_envelope(*self._envelope_settings)

    def _envelope_state(self, model: LoadedPolicy) -> str:
        if model.envelope is None:
            return "none (the model declares no envelope)"
        if model.monitor is None:
            return "off (envelope_check false)"
        last = model.monitor.last
        if last.tripped:
            return "out_of_envelope"
        return "outside (debouncing)" if last.outside else "inside"

    def _reject(self, error: str) -> None:
        self.stats["rejected_inputs"] += 1
        self._status = (WARN, error)
        self.get_logger().warning(error, throttle_duration_sec=1.0)

    def _skip(self, level: int, why: str) -> None:
        self.stats["skipped"] += 1
        self._status = (level, why)
        self.get_logger().warning(f"no residual: {why}", throttle_duration_sec=1.0)

    def _on_reference(self, msg: JointState) -> None:
        try:
            self._q_ref, self._qd_ref = read_reference(self.joints, msg)
        except ValueError as exc:
            self._reject(str(exc))
            return
        self._reference_received = True

    def _on_perception(self, msg: Float64MultiArray) -> None:
        try:
            self._perception = read_perception(self._expect.perception_features, msg)
        except ValueError as exc:
            self._reject(str(exc))
            return
        self._perception_time = now_sec(self)

    def _residual_for(self, model: LoadedPolicy, q, qd, a_base, now: float) -> np.ndarray | None:
        """The residual for this state, or None (and the reason in the status) when there is none."""
        if not self._reference_received:
            return self._skip(WARN, "no reference received")
        perception = None
        if model.assembler.uses_perception:
            lost = perception_lost(now, self._perception_time, self._perception_timeout)
            if lost:
                return self._skip(WARN, lost)
            perception = self._perception
        residual, level, why, model_error = model.residual(q, qd, self._q_ref, self._qd_ref, a_base, perception,
                                                           now)
        monitor = model.monitor
        tripped = monitor is not None and monitor.last.tripped
        if tripped and not self._envelope_tripped:
            self._envelope_trips += 1
            self._envelope_trip_times = (self._envelope_trip_times + [round(now, 3)])[-16:]
            self._envelope_last = why
            self.get_logger().warning(f"{why}: no residual until the state is back inside")
        elif self._envelope_tripped and not tripped:
            self.get_logger().info("back inside the training envelope: residual resumed")
        self._envelope_tripped = tripped
        if residual is None:
            self.stats["model_errors"] += int(model_error)
            return self._skip(level, why)
        return residual

    def _policy_status(self) -> dict:
        """The policy's /diagnostics values: the model, the last live update and the counters."""
        model = self.model
        last = model.monitor.last if model.monitor is not None else None
        return {"model_path": model.path, "model_sha256": model.runner.sha256,
                "last_model_update": self._model_update, **self.stats,
                "envelope": self._envelope_state(model),
                "envelope_feature": last.feature if last is not None and last.outside else "none",
                "envelope_excess": last.excess if last is not None and last.outside else 0.0,
                "envelope_trips": self._envelope_trips,
                "envelope_trip_times": list(self._envelope_trip_times),
                "last_out_of_envelope": self._envelope_last}

    def _on_model_loaded(self, loaded: LoadedPolicy) -> None:
        self.model = self._with_envelope(loaded)  # atomic swap
        self._model_update = f"loaded {loaded.path}"
        self._announce_model()

    def _on_model_refused(self, why: str) -> None:
        # The next control step overwrites _status: report the refusal now, and keep it
        # under last_model_update, so /diagnostics always shows it.
        self._model_update = why
        self._status = (ERROR, why)
        self._publish_diagnostics()


class Diagnostics:
    """Publishes one DiagnosticStatus for a node on /diagnostics."""

    def __init__(self, node: Node, name: str, hardware_id: str = "") -> None:
        self._node = node
        self._name = name
        self._hw = hardware_id
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)

    def publish(self, level: int, message: str, values: Mapping[str, object]) -> None:
        status = DiagnosticStatus(level=level, name=self._name, message=message[:500], hardware_id=self._hw)
        status.values = [KeyValue(key=k, value=_fmt(v)) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [status]
        self._pub.publish(msg)


_MODE_LEVEL = {Mode.NOMINAL: OK, Mode.RECOVERING: WARN, Mode.FALLBACK: WARN, Mode.BASE_FAULT: ERROR}


class MixerIO:
    """The mixer's outputs on a node: ``commands``, ``~/applied_residual``, latched ``~/mode``, /diagnostics.

    Shared by residual_mixer and the fused residual_controller, so both
    publish, log and report the mixer's state the same way.
    """

    def __init__(self, node: Node, mixer: Mixer, diagnostics_name: str) -> None:
        self.node = node
        self.mixer = mixer
        cfg = mixer.config
        self._cmd_pub = node.create_publisher(Float64MultiArray, "commands", CONTROL_QOS)
        self._applied_pub = node.create_publisher(JointState, "~/applied_residual", CONTROL_QOS)
        self._mode_pub = node.create_publisher(String, "~/mode", LATCHED_QOS)
        self._diag = Diagnostics(node, diagnostics_name, hardware_id=node.get_fully_qualified_name())
        self._cmd = Float64MultiArray()
        self._cmd.layout.dim = [MultiArrayDimension(label="joints", size=len(cfg.joints), stride=len(cfg.joints))]
        self._applied = JointState(name=list(cfg.joints))
        self.state_driven = False  # the node feeds joint_states to on_state

    def emit(self, out: MixOutput, stamp: TimeMsg | None) -> None:
        """Publish one mixer output; ``stamp`` is the base action's (None: now, from the watchdog)."""
        if out.transition:
            self.publish_mode()
            # One call site per severity: rclpy refuses a severity change at a call site.
            if out.mode == Mode.BASE_FAULT:
                self.node.get_logger().error(f"mode {out.mode.value}: {out.reason}")
            else:
                self.node.get_logger().info(f"mode {out.mode.value}: {out.reason}")
        if out.command is None:
            return
        self._cmd.data = out.command.tolist()
        self._cmd_pub.publish(self._cmd)
        # The applied residual is for logging: skip the second publish (half the
        # mixer's cost at 1 kHz, see docs/performance.md) when nobody listens.
        if self._applied_pub.get_subscription_count() == 0:
            return
        self._applied.header.stamp = stamp if stamp is not None else self.node.get_clock().now().to_msg()
        self._applied.effort = out.applied_residual.tolist()
        self._applied_pub.publish(self._applied)

    def watchdog(self) -> None:
        """Timer callback: the safe output when no base action came within base_timeout.

        With ``damp`` and fresh joint states, :meth:`on_state` publishes the safe stop at the
        joint states' rate instead.
        """
        now = now_sec(self.node)
        m = self.mixer
        if self.state_driven and m.mode == Mode.BASE_FAULT and m.config.base_stale_behavior == "damp":
            age = m.state_age(now)
            if age is not None and age <= m.config.base_timeout:
                return
        out = m.check_base(now)
        if out is not None:
            self.emit(out, None)

    def on_state(self, msg: JointState) -> None:
        """joint_states callback of the mixer node: the state damp uses; the safe output while the base is stale."""
        self.state_driven = True
        m = self.mixer
        now = now_sec(self.node)
        error = m.update_state(msg.name, msg.position, msg.velocity, now)
        if error:
            self.node.get_logger().warning(f"rejected joint_states: {error}", throttle_duration_sec=1.0)
        out = m.check_base(now)
        if out is not None:
            self.emit(out, msg.header.stamp)

    def publish_mode(self) -> None:
        self._mode_pub.publish(String(data=f"{self.mixer.mode.value}: {self.mixer.reason}"))
        self.publish_diagnostics()

    def publish_diagnostics(self) -> None:
        m = self.mixer
        now = now_sec(self.node)
        age = m.residual_age(now)
        cfg = m.config
        self._diag.publish(_MODE_LEVEL[m.mode], f"{m.mode.value}: {m.reason}", {
            "mode": m.mode.value,
            "reason": m.reason,
            "residual_age_s": "none" if age is None else age,
            "clamped_share": m.stats.clamped_share,
            "fallback_count": m.stats.fallback_count,
            "commands": m.stats.steps,
            "rejected_residuals": m.stats.rejected_residuals,
            "rejected_base_actions": m.stats.rejected_bases,
            "last_rejection": m.stats.last_rejection or "none",
            "residual_limit": cfg.residual_limit.tolist(),
            "residual_gain": cfg.residual_gain,
            "base_stale_behavior": cfg.base_stale_behavior,
            "fallback_ramp_time": cfg.fallback_ramp_time,
            "joint_state_age_s": "none" if m.state_age(now) is None else m.state_age(now),
        })


def mixer_changes(changes: Mapping[str, object]) -> dict[str, object]:
    """The part of validated parameter changes that reconfigures the mixer."""
    return {k: v for k, v in changes.items() if k in MixerConfig.__dataclass_fields__}


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


EXECUTOR_ENV = "RESIDUAL_CONTROL_EXECUTOR"
EXECUTORS = ("single", "multi", "events")


def make_executor(kind: str | None = None):
    """The executor the nodes spin on: ``single`` (default), ``multi`` or ``events``.

    ``RESIDUAL_CONTROL_EXECUTOR`` overrides the default; the benchmark uses it
    to compare executors on the same node (see docs/performance.md).
    """
    kind = kind or os.environ.get(EXECUTOR_ENV, "") or "single"
    if kind == "single":
        return SingleThreadedExecutor()
    if kind == "multi":
        return MultiThreadedExecutor(num_threads=2)
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor()
    raise ConfigError(f"{EXECUTOR_ENV}: expected one of {list(EXECUTORS)}, found {kind!r}")


class _StopSignals:
    """SIGINT/SIGTERM handling of a node process: at most one KeyboardInterrupt, while spinning.

    Installed before ``rclpy.init``, so rclpy's own handlers (which shut the
    context down and wake the executor) chain to them. While ``armed`` (the
    executor spins) the first signal raises KeyboardInterrupt, which stops
    the spin even when rclpy's wake-up came before its context shutdown and
    the executor went back to waiting; every other signal is only noted.
    Once the node shuts down both signals are ignored (SIG_IGN, which Python
    keeps through interpreter teardown, where it would reset a Python
    handler to the default action). A second SIGINT or SIGTERM during
    shutdown (``ros2 launch`` repeats SIGINT when its stdin is not a
    terminal: systemd, ``timeout``, CI) then neither raises in the middle of
    the clean-up nor kills the process.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: list[int] = []
        self.armed = False
        self._previous = {}

    def __call__(self, signum, frame) -> None:
        self.received.append(signum)
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt

    def install(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self)
        return self

    def ignore(self) -> None:
        if self._previous:
            for sig in self.SIGNALS:
                signal.signal(sig, signal.SIG_IGN)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def run_node(factory: Callable[[], Node], args=None, fatal: tuple = (ResidualControlError,),
             spin: Callable | None = None, restore_signals: bool = False) -> int:
    """The usual main(): init, build, spin, shut down cleanly; exits 0 on any number of SIGINT/SIGTERM.

    A node whose configuration is invalid (``fatal``: ConfigError, a refused
    model, ...) logs why and exits with status 2 instead of a traceback.
    ``spin(node, executor)`` replaces ``executor.spin()`` (the lockstep sim).
    SIGINT and SIGTERM stay ignored until the process exits, unless
    ``restore_signals`` (a caller that goes on after the node).
    """
    stop = _StopSignals().install()
    try:
        return _run_node(stop, factory, args, fatal, spin, restore_signals)
    except KeyboardInterrupt:  # the one a signal raises, if it lands outside the inner handlers
        return 0


def _run_node(stop: _StopSignals, factory, args, fatal, spin, restore_signals) -> int:
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        if not stop.received:  # a signal before rclpy's handlers were in place
            # The executor first: built on a context a signal just shut down, rclpy's Executor
            # fails half-way and its __del__ prints a traceback; the node takes much longer to build.
            executor = make_executor()
            node = factory()
            executor.add_node(node)
            stop.armed = True
            if not stop.received and rclpy.ok():
                if spin is None:
                    executor.spin()
                else:
                    spin(node, executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except fatal as exc:
        print(f"[FATAL] {exc}", file=sys.stderr, flush=True)
        code = 2
    except Exception:
        # rclpy refuses calls on a context its signal handler shut down (rcl_wait: "context is not
        # valid"), possibly before the Python-level handler has run: that is the stop, not an error.
        if not stop.received and rclpy.ok():
            raise
    finally:
        stop.armed = False
        stop.ignore()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if restore_signals:
            stop.restore()
    return code
