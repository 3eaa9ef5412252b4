"""Message <-> number conversions of the node adapters: stamps, clock, joint-name ordering, inputs.

Each reader takes a message and returns numpy arrays ordered by the node's
``joints`` (or perception features), or raises ValueError naming what was
expected and what was found.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from rclpy.node import Node


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
