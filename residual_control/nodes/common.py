"""Shared helpers of the thin rclpy adapters: parameters, time, diagnostics, main()."""
from __future__ import annotations

import sys
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from ..core.errors import ConfigError, ResidualControlError
from ..core.params import BOOL, DOUBLE, DOUBLE_ARRAY, INTEGER, STRING, STRING_ARRAY, ParamSpec
from .qos import DIAGNOSTICS_QOS

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


def declare_specs(node: Node, specs: Sequence[ParamSpec]) -> dict[str, object]:
    """Declare every spec on the node and return the validated values (raises ConfigError)."""
    values = {}
    for spec in specs:
        node.declare_parameter(spec.name, spec.default, descriptor(spec))
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
            raise ConfigError(f"parameter '{p.name}': read-only")
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


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def run_node(factory: Callable[[], Node], args=None) -> int:
    """The usual main(): init, build, spin single-threaded, shut down cleanly.

    A node whose configuration is invalid (ConfigError, including a refused
    model) logs why and exits with status 2 instead of a traceback.
    """
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ResidualControlError as exc:
        print(f"[FATAL] {exc}", file=sys.stderr, flush=True)
        code = 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code
