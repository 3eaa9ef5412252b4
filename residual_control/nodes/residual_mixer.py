"""residual_mixer node: a = clip(a_base + g * clip(da, -eps, eps)), with fallback to a_base.

Subscribes ``base_action`` and ``residual_action`` (sensor_msgs/JointState,
effort field, matched by joint name); publishes ``commands``
(std_msgs/Float64MultiArray ordered by ``joints``) once per base action,
``~/applied_residual`` (sensor_msgs/JointState, effort = a - a_base before the
command clip, stamped with the base action's stamp), a latched ``~/mode``
(std_msgs/String, ``<mode>: <reason>``) on every transition, and
/diagnostics. The control law lives in :mod:`residual_control.core.mixer`.
"""
from __future__ import annotations

from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, String

from ..core.errors import ConfigError
from ..core.mixer import Mixer, MixerConfig, MixOutput, Mode
from ..core.params import MIXER_PARAMS, spec_map
from .common import ERROR, OK, WARN, Diagnostics, declare_specs, now_sec, result, run_node, stamp_to_sec, \
    validate_changes
from .qos import CONTROL_QOS, LATCHED_QOS

_LEVEL = {Mode.NOMINAL: OK, Mode.RECOVERING: WARN, Mode.FALLBACK: WARN, Mode.BASE_FAULT: ERROR}


class ResidualMixerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("residual_mixer", **kwargs)
        self._specs = spec_map(MIXER_PARAMS)
        values = declare_specs(self, MIXER_PARAMS)
        self.mixer = Mixer(MixerConfig.from_params(values))
        self._diag_period = float(values["diagnostics_period"])
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._cmd_pub = self.create_publisher(Float64MultiArray, "commands", CONTROL_QOS)
        self._applied_pub = self.create_publisher(JointState, "~/applied_residual", CONTROL_QOS)
        self._mode_pub = self.create_publisher(String, "~/mode", LATCHED_QOS)
        self._diag = Diagnostics(self, "residual_mixer: mode", hardware_id=self.get_fully_qualified_name())
        self.create_subscription(JointState, "base_action", self._on_base, CONTROL_QOS)
        self.create_subscription(JointState, "residual_action", self._on_residual, CONTROL_QOS)
        cfg = self.mixer.config
        self._watchdog = self.create_timer(max(cfg.base_timeout / 2.0, 0.002), self._on_watchdog)
        self._diag_timer = self.create_timer(self._diag_period, self._publish_diagnostics)

        self._cmd = Float64MultiArray()
        self._cmd.layout.dim = [MultiArrayDimension(label="joints", size=len(cfg.joints), stride=len(cfg.joints))]
        self._applied = JointState(name=list(cfg.joints))
        self._publish_mode()
        self.get_logger().info(
            f"mixing {list(cfg.joints)}: residual_limit {cfg.residual_limit.tolist()}, "
            f"gain {cfg.residual_gain:g}, base_stale_behavior {cfg.base_stale_behavior}")

    # ------------------------------------------------------------------ callbacks
    def _on_residual(self, msg: JointState) -> None:
        error = self.mixer.update_residual(msg.name, msg.effort, stamp_to_sec(msg.header.stamp), now_sec(self))
        if error:
            self.get_logger().warn(f"rejected residual_action: {error}", throttle_duration_sec=1.0)

    def _on_base(self, msg: JointState) -> None:
        out = self.mixer.step(msg.name, msg.effort, stamp_to_sec(msg.header.stamp), now_sec(self))
        self._emit(out, msg)

    def _on_watchdog(self) -> None:
        out = self.mixer.check_base(now_sec(self))
        if out is not None:
            self._emit(out, None)

    def _emit(self, out: MixOutput, base_msg: JointState | None) -> None:
        if out.transition:
            self._publish_mode()
            log = self.get_logger().error if out.mode == Mode.BASE_FAULT else self.get_logger().info
            log(f"mode {out.mode.value}: {out.reason}")
        if out.command is None:
            return
        self._cmd.data = out.command.tolist()
        self._cmd_pub.publish(self._cmd)
        if base_msg is not None:
            self._applied.header.stamp = base_msg.header.stamp
        else:
            self._applied.header.stamp = self.get_clock().now().to_msg()
        self._applied.effort = out.applied_residual.tolist()
        self._applied_pub.publish(self._applied)

    def _publish_mode(self) -> None:
        self._mode_pub.publish(String(data=f"{self.mixer.mode.value}: {self.mixer.reason}"))
        self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        m = self.mixer
        now = now_sec(self)
        age = m.residual_age(now)
        cfg = m.config
        self._diag.publish(_LEVEL[m.mode], f"{m.mode.value}: {m.reason}", {
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
        })

    def _on_set_parameters(self, params):
        try:
            changes = validate_changes(self._specs, params)
            mixer_changes = {k: v for k, v in changes.items() if k in MixerConfig.__dataclass_fields__}
            if mixer_changes:
                self.mixer.reconfigure(**mixer_changes)
        except ConfigError as exc:
            self.get_logger().warn(f"rejected parameter change: {exc}")
            return result(str(exc))
        for k, v in changes.items():
            self.get_logger().info(f"parameter {k} set to {v}")
        return result()


def main(args=None) -> int:
    return run_node(ResidualMixerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
