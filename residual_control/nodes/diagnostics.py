"""/diagnostics of the nodes: status levels, the mixer mode's level, one publisher per reported status."""
from __future__ import annotations

from typing import Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from ..core.mixer import Mode
from .qos import DIAGNOSTICS_QOS

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR

#: The diagnostic level of each mixer mode.
#: The node attribute run_node sets to the loop it spins the node on (reported as ``loop`` on /diagnostics).
LOOP_ATTRIBUTE = "residual_control_loop"

MODE_LEVEL = {Mode.NOMINAL: OK, Mode.RECOVERING: WARN, Mode.FALLBACK: WARN, Mode.BASE_FAULT: ERROR}


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
        loop = getattr(self._node, LOOP_ATTRIBUTE, "")
        if loop:  # the loop the node's process spins on (nodes/process.py)
            status.values.append(KeyValue(key="loop", value=loop))
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [status]
        self._pub.publish(msg)


class BaseCounters:
    """The base controller's own counters on /diagnostics (mpc: solves, fallbacks, last solve time).

    One per node that runs a base controller (base_controller, the fused residual_controller): it adds the
    controller's counters to a status's values and raises an OK status to WARN when the controller fell
    back since the last report.
    """

    def __init__(self) -> None:
        self.reported = 0  # fallbacks already on /diagnostics

    def reset(self) -> None:
        """Start over for a new controller (its counters start at zero)."""
        self.reported = 0

    def add(self, controller, level: int, message: str, values: dict) -> tuple[int, str]:
        """Add ``controller``'s counters to ``values``; return the status's (level, message)."""
        counters = getattr(controller, "diagnostics", None)
        if counters is None:
            return level, message
        values.update(counters())
        new = controller.fallbacks - self.reported
        self.reported = controller.fallbacks
        if level == OK and new > 0:  # fell back since the last report
            level, message = WARN, (f"mpc: {new} periods on the PD plus gravity fallback "
                                    f"(last: {controller.last_fallback_reason})")
        return level, message


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
