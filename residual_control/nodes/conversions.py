"""Message <-> number conversions of the node adapters: stamps, clock, joint-name ordering, inputs.

Each reader takes a message and returns numpy arrays ordered by the node's
``joints`` (or perception features), or raises ValueError naming what was
expected and what was found.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from rclpy.node import Node

from ..core.joints import order_by_name


def stamp_to_sec(stamp: TimeMsg) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def now_sec(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


def read_or_reject(reject: Callable[[str], None], reader: Callable, *args):
    """``reader(*args)``, or None once ``reject`` got the reason a message was refused (a ValueError)."""
    try:
        return reader(*args)
    except ValueError as exc:
        reject(str(exc))
        return None


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
    """Return the perception features of a Float64MultiArray; raises ValueError naming the problem."""
    n = len(features)
    data = np.asarray(msg.data, dtype=float)
    if data.size != n or not np.isfinite(data).all():
        raise ValueError(f"perception: expected {n} finite features {list(features)}, found {data.tolist()[:8]}")
    return data


#: ``base_action_type`` values and the message type of each (docs/external_base.md).
BASE_ACTION_TYPES = ("joint_state", "float64_multi_array")


def base_action_msg_type(base_action_type: str):
    """Return the message class of ``base_action`` for a ``base_action_type``; ValueError naming the known ones."""
    if base_action_type == "joint_state":
        from sensor_msgs.msg import JointState

        return JointState
    if base_action_type == "float64_multi_array":
        from std_msgs.msg import Float64MultiArray

        return Float64MultiArray
    raise ValueError(f"base_action_type: expected one of {list(BASE_ACTION_TYPES)}, found {base_action_type!r}")


def read_base_array(joints: Sequence[str], msg) -> np.ndarray:
    """Return the base action of an unstamped std_msgs/Float64MultiArray, one value per joint in ``joints`` order.

    Raises ValueError naming what was expected and what was found (wrong length, non-finite values).
    """
    n = len(joints)
    data = np.asarray(msg.data, dtype=float).reshape(-1)
    if data.size != n:
        raise ValueError(f"base_action (std_msgs/Float64MultiArray): expected {n} values in the order of "
                         f"joints {list(joints)}, found {data.size}: {data.tolist()[:8]}")
    if not np.isfinite(data).all():
        raise ValueError(f"base_action (std_msgs/Float64MultiArray): expected finite values for joints "
                         f"{list(joints)}, found {data.tolist()}")
    return data
