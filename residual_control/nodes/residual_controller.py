"""residual_controller node: the fused mode, base controller + residual policy + mixer in one process.

The core's :class:`~residual_control.core.step.ResidualLoop` (base controller,
policy step, mixer: the same core classes as the three separate nodes), called
once per message in the ``joint_states`` callback: one hop in, one hop out, no
DDS between stages.

Subscribes ``joint_states`` (the trigger), ``reference`` and ``perception``;
publishes ``commands`` once per joint state, ``~/applied_residual`` (stamped
with the joint state's stamp), the latched ``~/mode`` and ``~/model``, and
/diagnostics (``residual_controller: mode`` like the mixer's status,
``residual_controller: policy`` like residual_policy's, ``residual_controller: base``
like base_controller's: the controller's type and its own counters, an mpc's
solves and fallbacks).

Semantics are those of the separate graph: the base action is the base
controller's output for this joint state (holding the first measured position
until a reference arrives); the policy computes no residual while perception
is lost, no reference has been received, the observation has been outside the
model's training envelope for ``envelope_debounce``, or the model fails, and the mixer
then falls back after ``residual_timeout`` exactly as it does when
``residual_action`` stops. One difference by construction: the residual mixed
into a command is computed from the same joint state as its base action (the
separate graph mixes the newest residual that arrived, usually one sample
older).

Parameters are the union of the three nodes' (core.params.FUSED_PARAMS). The one
name they share with different meanings is ``residual_limit``: here it is the
mixer's live-tunable clamp, and the model's declared bound is checked against
its value at start. Mixer, base controller gains and perception/joint-state
timeouts can be tuned live; ``model_path`` swaps the model off the control
path like residual_policy.
"""
from __future__ import annotations

import copy
from typing import Mapping

from rclpy.node import Node
from sensor_msgs.msg import JointState

from ..core.base_controllers import make_base_controller
from ..core.errors import ConfigError
from ..core.mixer import mixer_from_params
from ..robot.nominal import nominal_model
from ..core.params import BASE_PARAMS, FUSED_PARAMS, spec_map
from ..core.step import ResidualLoop
from ..params_file import section
from .conversions import now_sec, read_or_reject, read_state, stamp_to_sec
from .diagnostics import ERROR, OK, WARN, BaseCounters, Diagnostics
from .mixer_io import MixerIO
from .parameters import applied, declare_specs, mixer_changes, refused, result, validate_changes
from .policy_io import PolicyIO
from .process import run_node
from .throttle import ThrottledWarning
from .qos import CONTROL_QOS

NODE_NAME = "residual_controller"
# Sections of the params file the fused node's parameters come from; on a clash the first wins.
SOURCE_NODES = ("residual_mixer", "base_controller", "residual_policy")


_BASE_NAMES = frozenset(s.name for s in BASE_PARAMS)


def fused_parameters(params_file: Mapping[str, object]) -> dict[str, object]:
    """Return the ``residual_controller`` parameters equivalent to a params file's three node sections.

    ``params_file`` is the loaded YAML (``/**``, ``base_controller``,
    ``residual_policy``, ``residual_mixer``); nested ``model:`` entries stay
    nested, as ROS flattens them to ``model.*``. Returns the mapping to put
    under ``residual_controller: ros__parameters:``.
    """
    merged = section(params_file, "/**")
    for name in reversed(SOURCE_NODES):  # the first of SOURCE_NODES overrides the others
        merged.update(section(params_file, name))
    return copy.deepcopy(merged)  # no object shared with the sections (YAML would write aliases)


class ResidualControllerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._specs = spec_map(FUSED_PARAMS)
        v = declare_specs(self, FUSED_PARAMS)
        self._values = v
        self._warn_rejected = ThrottledWarning(self.get_logger())
        self.joints = tuple(v["joints"])
        self.controller = make_base_controller(v, nominal_model(v))
        self.mixer = mixer_from_params(v, nominal_model(v))
        self.stats = {"base_actions": 0, "residuals": 0, "skipped": 0, "model_errors": 0, "rejected_inputs": 0}
        self.io = MixerIO(self, self.mixer, f"{NODE_NAME}: mode")
        self._policy_diag = Diagnostics(self, f"{NODE_NAME}: policy", hardware_id=self.get_fully_qualified_name())
        self._base_diag = Diagnostics(self, f"{NODE_NAME}: base", hardware_id=self.get_fully_qualified_name())
        self._counters = BaseCounters()  # the base controller's own (mpc: solves, fallbacks)
        self.create_subscription(JointState, "joint_states", self._on_joint_state, CONTROL_QOS)
        # The model (refused: exit 2), reference, perception, ~/model.
        self.policy = PolicyIO(self, v, self.joints, self.stats, self._publish_diagnostics)
        self.loop = ResidualLoop(self.joints, self.controller, self.policy.step, self.mixer)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        cfg = self.mixer.config
        self._watchdog = self.create_timer(max(cfg.base_timeout / 2.0, 0.002), self.io.watchdog)
        self.create_timer(float(v["diagnostics_period"]), self._publish_diagnostics)
        self.io.publish_mode()
        self.policy.announce_model()
        self.get_logger().info(
            f"{self.controller.kind} + residual on {list(self.joints)}: residual_limit "
            f"{cfg.residual_limit.tolist()}, gain {cfg.residual_gain:g}, base_stale_behavior {cfg.base_stale_behavior}")

    # ------------------------------------------------------------------ trigger
    def _on_joint_state(self, msg: JointState) -> None:
        state = read_or_reject(self.policy.reject, read_state, self.joints, msg)
        if state is None:
            return
        step = self.loop.step(*state, stamp_to_sec(msg.header.stamp), now_sec(self))
        if step.hold_started:  # no reference yet: the first measured position
            self.policy.log_hold_started()
        if step.base_error:
            self.policy.reject(step.base_error)
            return
        self.stats["base_actions"] += 1
        if self.policy.report(step.policy) is not None:  # none: counted and reported (the mixer falls back)
            if step.rejected:
                self._warn_rejected(f"rejected residual: {step.rejected}")
                self.policy.skip(ERROR, step.rejected)
            else:
                self.stats["residuals"] += 1
                self.policy.status = (OK, "running")
        self.io.emit(step.output, msg.header.stamp)

    def _publish_diagnostics(self) -> None:
        self.io.publish_diagnostics()
        level, message = self.policy.status
        self._policy_diag.publish(level, message,
                                  {"controller_type": self.controller.kind, **self.policy.diagnostics_values()})
        values = {"controller_type": self.controller.kind, "base_actions": self.stats["base_actions"]}
        level, message = (OK, "running") if self.stats["base_actions"] else (WARN, "no base action computed yet")
        level, message = self._counters.add(self.controller, level, message, values)
        self._base_diag.publish(level, message, values)

    # ------------------------------------------------------------------ parameters
    def _on_set_parameters(self, params):
        if self.policy.swap.reverting:
            return result()
        try:
            changes = validate_changes(self._specs, params)
            mc = mixer_changes(changes)
            if mc:
                self.mixer.config.with_changes(**mc)  # validate before applying anything
            base = {k: v for k, v in changes.items() if k in _BASE_NAMES}
            values = {**self._values, **base}
            controller = make_base_controller(values, nominal_model(values)) if base else None
        except (ConfigError, KeyError) as exc:
            return refused(self, exc)
        error = self.policy.swap.request(changes)
        if error:
            return result(error)
        if mc:
            self.mixer.reconfigure(**mc)
        if controller is not None:
            controller.carry_state_from(self.controller)  # a PID keeps its integral: no bump
            self.controller = self.loop.controller = controller
            self._counters.reset()
        self._values.update(changes)
        if "perception_timeout" in changes:
            self.policy.perception_timeout = float(changes["perception_timeout"])
        self.policy.set_envelope_params(changes)
        return applied(self, changes)


def main(args=None) -> int:
    return run_node(ResidualControllerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
