"""QoS profiles, one per kind of stream.

* ``CONTROL_QOS`` (joint_states, reference, base_action, residual_action,
  commands, perception): RELIABLE, KEEP_LAST 1, VOLATILE. Only the newest
  sample matters to a controller, so depth 1: a burst or a slow subscriber
  never queues old commands. RELIABLE because ros2_control's
  forward_command_controller and joint_state_broadcaster use the system
  default (reliable) profile, and a reliable publisher also matches
  best-effort subscribers (plotters, ``ros2 topic echo``).
* ``LATCHED_QOS`` (``~/mode``): RELIABLE, KEEP_LAST 1, TRANSIENT_LOCAL, so a
  late joiner sees the current mode.
* ``DIAGNOSTICS_QOS``: the ``/diagnostics`` convention, RELIABLE, depth 10.
"""
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

CONTROL_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

DIAGNOSTICS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
