"""The policy side of a node: the loaded model, its live swap, the reference/perception inputs, the policy status.

:class:`PolicyIO` is owned by residual_policy and by the fused
residual_controller, so both load, swap, check and report the model the
same way. The step itself and its rules are the core's
:class:`~residual_control.core.step.PolicyStep` (``PolicyIO.step``); this
module feeds it from the topics and reports its outcomes.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable, Mapping, MutableMapping, Sequence

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String

from ..core.errors import ResidualControlError
from ..core.policy import PolicyExpectations
from ..core.step import LoadedPolicy, PolicyOutcome, PolicyStep, ReferenceHold
from .conversions import now_sec, read_or_reject, read_perception, read_reference, stamp_to_sec
from .diagnostics import ERROR, WARN
from .throttle import ThrottledWarning
from .qos import CONTROL_QOS, LATCHED_QOS


#: Above this size a model's SHA-256 pin is checked off the control path only (hashing blocks the executor).
SYNC_HASH_LIMIT_BYTES = 16 << 20


def model_file_problem(path: str, sha256: str) -> str:
    """Return what makes ``path`` unusable as a model, as far as it is checked at once; '' if nothing.

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
        except Exception as exc:  # refused, or any failure of the load: keep the model, never leave loading set
            if not isinstance(exc, ResidualControlError):
                exc = f"{type(exc).__name__}: {exc}"
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


def robot_default_model(robot) -> str:
    """Return the model an empty model_path selects: the robot folder's (robot.yaml ``model``), else the package's."""
    from ..core.errors import ConfigError
    from ..paths import default_model
    from ..robot.folder import RobotFolderError, load_robot

    if isinstance(robot, str) and robot:
        try:
            spec = load_robot(robot)
        except RobotFolderError as exc:
            raise ConfigError(f"robot: {exc}") from None
        if spec.model is not None:
            return str(spec.model)
    return str(default_model())


class PolicyIO:
    """The policy side of residual_policy and residual_controller, owned by the node.

    Owns the policy's core step (``step``: the model, the reference, the
    perception and the rules), the model's live swap (``swap``), the
    ``reference`` and ``perception`` subscriptions, the latched ``~/model``
    topic and the policy's status (``status``). The node passes in what they
    share: its joints, its counters (``stats``: this counts ``skipped``,
    ``model_errors`` and ``rejected_inputs`` in it) and its /diagnostics
    publication, called when a live model update is refused. Building it loads
    and validates the model (raises ResidualControlError).
    """

    def __init__(self, node: Node, v: Mapping[str, object], joints: Sequence[str], stats: MutableMapping[str, int],
                 publish_diagnostics: Callable[[], None]) -> None:
        self._node = node
        self.joints = tuple(joints)
        self._warn_reject = ThrottledWarning(node.get_logger())
        self._warn_skip = ThrottledWarning(node.get_logger())
        self.stats = stats
        self._publish_diagnostics = publish_diagnostics
        self.expect = PolicyExpectations(
            joints=self.joints, residual_limit=v["residual_limit"], control_rate_hz=v["control_rate_hz"],
            perception_features=tuple(v["perception_features"]))
        self._envelope_settings = (bool(v.get("envelope_check", True)), float(v.get("envelope_debounce", 0.1)),
                                   float(v.get("envelope_margin", 0.0)))
        self.step = PolicyStep(
            self._with_envelope(LoadedPolicy(v["model_path"] or robot_default_model(v.get("robot")),
                                             v["model_sha256"], self.expect)),
            self.joints, float(v["perception_timeout"]), ReferenceHold(len(self.joints)))
        fallback = robot_default_model(v.get("robot"))
        self.swap = ModelSwap(node, self.expect, v["model_path"], v["model_sha256"], lambda: fallback,
                              lambda: self.model, self._on_model_loaded, self._on_model_refused)
        self.status = (WARN, "waiting for inputs")
        self._model_update = "none"  # outcome of the last live model update (kept on /diagnostics)
        self._model_pub = node.create_publisher(String, "~/model", LATCHED_QOS)
        node.create_subscription(JointState, "reference", self._on_reference, CONTROL_QOS)
        node.create_subscription(Float64MultiArray, "perception", self._on_perception, CONTROL_QOS)

    @property
    def model(self) -> LoadedPolicy:
        """The running model (replaced as a whole by a live update)."""
        return self.step.model

    @property
    def reference(self) -> ReferenceHold:
        return self.step.reference

    @property
    def perception_timeout(self) -> float:
        return self.step.perception_timeout

    @perception_timeout.setter
    def perception_timeout(self, value: float) -> None:
        self.step.perception_timeout = float(value)

    # ------------------------------------------------------------------ the model
    def announce_model(self) -> None:
        m = self.model
        self._model_pub.publish(String(data=f"{m.path} sha256={m.runner.sha256}"))
        self._node.get_logger().info(
            f"model {m.path} (sha256 {m.runner.sha256[:12]}…): {m.assembler.size} observations, "
            f"joints {m.joint_names}, perception {'used' if m.assembler.uses_perception else 'unused'}")

    def _with_envelope(self, loaded: LoadedPolicy) -> LoadedPolicy:
        """Return the model with the node's envelope settings; warns once (per model) when it declares no envelope."""
        loaded.configure_envelope(*self._envelope_settings)
        if loaded.envelope is None:
            self._node.get_logger().warning(
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

    def _on_model_loaded(self, loaded: LoadedPolicy) -> None:
        self.step.model = self._with_envelope(loaded)  # atomic swap
        self._model_update = f"loaded {loaded.path}"
        self.announce_model()

    def _on_model_refused(self, why: str) -> None:
        # The next control step overwrites the status: report the refusal now, and keep it
        # under last_model_update, so /diagnostics always shows it.
        self._model_update = why
        self.status = (ERROR, why)
        self._publish_diagnostics()

    # ------------------------------------------------------------------ inputs
    def _on_reference(self, msg: JointState) -> None:
        reference = read_or_reject(self.reject, read_reference, self.joints, msg)
        if reference is not None:
            self.step.reference.set(*reference, stamp_to_sec(msg.header.stamp))

    def _on_perception(self, msg: Float64MultiArray) -> None:
        values = read_or_reject(self.reject, read_perception, self.expect.perception_features, msg)
        if values is not None:
            self.step.set_perception(values, now_sec(self._node))

    def log_hold_started(self) -> None:
        self._node.get_logger().info("no reference yet: holding the first measured position")

    def reject(self, error: str) -> None:
        """Count, report (WARN) and log (throttled) a rejected input message."""
        self.stats["rejected_inputs"] += 1
        self.status = (WARN, error)
        self._warn_reject(error)

    def skip(self, level: int, why: str) -> None:
        """No residual this step: counted, reported and logged (throttled)."""
        self.stats["skipped"] += 1
        self.status = (level, why)
        self._warn_skip(f"no residual: {why}")

    # ------------------------------------------------------------------ the step
    def report(self, outcome: PolicyOutcome) -> np.ndarray | None:
        """Return the outcome's residual, or None after counting and reporting why there is none (the status)."""
        if outcome.envelope == "tripped":
            self._node.get_logger().warning(f"{outcome.why}: no residual until the state is back inside")
        elif outcome.envelope == "cleared":
            self._node.get_logger().info("back inside the training envelope: residual resumed")
        if outcome.residual is None:
            self.stats["model_errors"] += int(outcome.model_error)
            return self.skip(ERROR if outcome.model_error else WARN, outcome.why)
        return outcome.residual

    def residual_for(self, q, qd, a_base, now: float, stamp: float | None = None
                     ) -> tuple[np.ndarray | None, PolicyOutcome]:
        """(residual or None, the outcome): the policy step for this state (stamped ``stamp``), reported."""
        outcome = self.step.step(q, qd, a_base, now, stamp)
        return self.report(outcome), outcome

    # ------------------------------------------------------------------ status
    def diagnostics_values(self) -> dict:
        """Return the policy's /diagnostics values: the model, the last live update and the counters."""
        step = self.step
        model = step.model
        last = model.monitor.last if model.monitor is not None else None
        return {"model_path": model.path, "model_sha256": model.runner.sha256,
                "last_model_update": self._model_update, **self.stats,
                "envelope": step.envelope_state(model),
                "envelope_feature": last.feature if last is not None and last.outside else "none",
                "envelope_excess": last.excess if last is not None and last.outside else 0.0,
                "envelope_trips": step.envelope_trips,
                "envelope_trip_times": list(step.envelope_trip_times),
                "last_out_of_envelope": step.envelope_last}
