"""The mixer's outputs on a node: commands, the applied residual, the latched mode, /diagnostics, the watchdog."""
from __future__ import annotations

from builtin_interfaces.msg import Time as TimeMsg
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, String

from ..core.mixer import Mixer, MixOutput, Mode
from .conversions import now_sec
from .diagnostics import MODE_LEVEL, Diagnostics
from .throttle import ThrottledWarning
from .qos import CONTROL_QOS, LATCHED_QOS


class MixerIO:
    """The mixer's outputs on a node: ``commands``, ``~/applied_residual``, latched ``~/mode``, /diagnostics.

    Shared by residual_mixer and the fused residual_controller, so both
    publish, log and report the mixer's state the same way.
    """

    def __init__(self, node: Node, mixer: Mixer, diagnostics_name: str) -> None:
        self.node = node
        self.mixer = mixer
        self._warn_state = ThrottledWarning(node.get_logger())
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
            self._warn_state(f"rejected joint_states: {error}")
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
        self._diag.publish(MODE_LEVEL[m.mode], f"{m.mode.value}: {m.reason}", {
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
