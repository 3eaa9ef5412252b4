"""residual_mixer node: a = clip(a_base + g * clip(da, -eps, eps)), with fallback to a_base.

Subscribes ``base_action`` and ``residual_action`` (sensor_msgs/JointState,
effort field, matched by joint name) and ``joint_states`` (position and
velocity, for ``base_stale_behavior: damp``). With ``base_action_type:
float64_multi_array``, ``base_action`` is a std_msgs/Float64MultiArray in the
order of ``joints`` (a controller outside the package, docs/external_base.md):
unstamped, it is stamped with its receipt time on the node's clock, so
``base_timeout`` measures the publisher's silence; one of the wrong length or
with a non-finite value is refused like an invalid JointState (counted in
``rejected_base_actions``, the reason in ``last_rejection``). Publishes ``commands``
(std_msgs/Float64MultiArray ordered by ``joints``) once per base action (and,
while the base action is stale with ``damp``, once per joint state),
``~/applied_residual`` (sensor_msgs/JointState, effort = a - a_base before the
command clip, stamped with the base action's stamp), a latched ``~/mode``
(std_msgs/String, ``<mode>: <reason>``) on every transition, and
/diagnostics. The control law lives in :mod:`residual_control.core.mixer`.
"""
from __future__ import annotations

from rclpy.node import Node
from sensor_msgs.msg import JointState

from ..core.errors import ConfigError
from ..core.mixer import mixer_from_params
from ..robot.nominal import nominal_model
from ..core.params import MIXER_PARAMS, spec_map
from .conversions import base_action_msg_type, now_sec, read_base_array, stamp_to_sec
from .mixer_io import MixerIO
from .parameters import applied, declare_specs, mixer_changes, refused, validate_changes
from .process import run_node
from .throttle import ThrottledWarning
from .qos import CONTROL_QOS


class ResidualMixerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("residual_mixer", **kwargs)
        self._specs = spec_map(MIXER_PARAMS)
        values = declare_specs(self, MIXER_PARAMS)
        self._warn_residual = ThrottledWarning(self.get_logger())
        self._warn_base = ThrottledWarning(self.get_logger())
        self.mixer = mixer_from_params(values, nominal_model(values))
        self._diag_period = float(values["diagnostics_period"])
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.io = MixerIO(self, self.mixer, "residual_mixer: mode")
        # The residual first: when a residual and a base action are both waiting, the executor takes
        # them in this order, so the base action is mixed with the newest residual, not the one before.
        self.create_subscription(JointState, "residual_action", self._on_residual, CONTROL_QOS)
        self._base_action_type = str(values["base_action_type"])
        on_base = self._on_base if self._base_action_type == "joint_state" else self._on_base_array
        self.create_subscription(base_action_msg_type(self._base_action_type), "base_action", on_base,
                                 CONTROL_QOS)
        self.create_subscription(JointState, "joint_states", self.io.on_state, CONTROL_QOS)
        cfg = self.mixer.config
        self._watchdog = self.create_timer(max(cfg.base_timeout / 2.0, 0.002), self.io.watchdog)
        self._diag_timer = self.create_timer(self._diag_period, self.io.publish_diagnostics)
        self.io.publish_mode()
        self.get_logger().info(
            f"mixing {list(cfg.joints)}: residual_limit {cfg.residual_limit.tolist()}, "
            f"gain {cfg.residual_gain:g}, base_stale_behavior {cfg.base_stale_behavior} (damp_kd "
            f"{cfg.damp_kd.tolist()}, gravity {'model' if self.mixer.has_gravity else 'none'}), "
            f"fallback_ramp_time {cfg.fallback_ramp_time:g} s, base_action {self._base_action_type}")

    # ------------------------------------------------------------------ callbacks
    def _on_residual(self, msg: JointState) -> None:
        error = self.mixer.update_residual(msg.name, msg.effort, stamp_to_sec(msg.header.stamp), now_sec(self))
        if error:
            self._warn_residual(f"rejected residual_action: {error}")

    def _on_base(self, msg: JointState) -> None:
        out = self.mixer.step(msg.name, msg.effort, stamp_to_sec(msg.header.stamp), now_sec(self))
        self.io.emit(out, msg.header.stamp)

    def _on_base_array(self, msg) -> None:
        """Mix an unstamped base action (std_msgs/Float64MultiArray in ``joints`` order), stamped at receipt."""
        joints = self.mixer.config.joints
        now = now_sec(self)
        try:
            base = read_base_array(joints, msg)
        except ValueError as exc:
            # The core refuses it as it refuses an invalid JointState (counted, base_fault); the
            # node's reason names the message type and the joints order.
            out = self.mixer.step(joints, list(msg.data), now, now)
            self.mixer.stats.last_rejection = str(exc)
            self._warn_base(f"rejected base_action: {exc}")
            self.io.emit(out, None)
            return
        self.io.emit(self.mixer.step(joints, base, now, now), None)

    def _on_set_parameters(self, params):
        try:
            changes = validate_changes(self._specs, params)
            mc = mixer_changes(changes)
            if mc:
                self.mixer.reconfigure(**mc)
        except ConfigError as exc:
            return refused(self, exc)
        return applied(self, changes)


def main(args=None) -> int:
    return run_node(ResidualMixerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
