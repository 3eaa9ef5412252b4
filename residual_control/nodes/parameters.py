"""ParamSpecs as rclpy parameters: descriptors, declaration, validation of live changes.

Double and double-array parameters accept integers (``ros2 param set ... 1``,
``[8, 4]`` in a params file) and store them as doubles; every value is
checked by its :class:`~residual_control.core.params.ParamSpec`, and a
rejection names what was expected and what was found.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from ..core.errors import ConfigError, describe
from ..core.mixer import MixerConfig
from ..core.params import DOUBLE, DOUBLE_ARRAY, INTEGER, ParamSpec

_NUMERIC = (DOUBLE, DOUBLE_ARRAY, INTEGER)


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.doc, read_only=spec.read_only)
    if spec.kind in _NUMERIC:
        # Dynamic typing so `ros2 param set ... 1` (an integer) is accepted for a
        # double; the spec validates and converts, with a reason on rejection.
        d.dynamic_typing = True
        lo = "-inf" if spec.min is None else f"{spec.min:g}"
        hi = "inf" if spec.max is None else f"{spec.max:g}"
        per_element = " per element" if spec.kind == DOUBLE_ARRAY else ""
        d.additional_constraints = f"finite, {lo} <= value <= {hi}{per_element}"
        if spec.kind == DOUBLE and spec.min is not None and spec.max is not None:
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max))]
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    return d


def _coerce_to_specs(specs: Mapping[str, ParamSpec], params: list[Parameter]) -> list[Parameter]:
    """Pre-set callback: integers set on a double (array) parameter become doubles before they are stored."""
    out = []
    for p in params:
        spec = specs.get(p.name)
        if spec is not None and p.type_ in (Parameter.Type.INTEGER, Parameter.Type.INTEGER_ARRAY):
            value = spec.coerce(p.value)
            if value is not p.value:
                p = Parameter(p.name, value=value)
        out.append(p)
    return out


def declare_specs(node: Node, specs: Sequence[ParamSpec]) -> dict[str, object]:
    """Declare every spec on the node and return the validated values (raises ConfigError).

    Double and double-array parameters are stored as doubles, also when a
    params file or ``ros2 param set`` gives integers (``[8, 4]``): the
    override is converted before it is declared, and a pre-set callback
    converts later sets (rclpy >= Jazzy; without it the value is still
    validated and used as doubles, only stored as given).
    """
    registry = getattr(node, "_residual_control_specs", None)
    if registry is None:
        registry = {}
        node._residual_control_specs = registry
        if hasattr(node, "add_pre_set_parameters_callback"):
            node.add_pre_set_parameters_callback(lambda params: _coerce_to_specs(registry, params))
    registry.update({s.name: s for s in specs})
    overrides = getattr(node, "_parameter_overrides", None) or {}
    values = {}
    missing = [s for s in specs if s.robot_specific and s.name not in overrides]
    for spec in specs:
        if spec in missing:
            continue
        d = descriptor(spec)
        override = overrides.get(spec.name)
        try:
            value = spec.default if override is None else spec.coerce(override.value)
            node.declare_parameter(spec.name, value, d, ignore_override=True)
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            # rclpy checks the descriptor's range/type first (an out-of-range or NaN
            # value in a params file): report it like every other bad value.
            override = (overrides or {}).get(spec.name)
            found = describe(override.value) if override is not None else "an invalid value"
            expected = d.additional_constraints or spec.kind
            raise ConfigError(f"parameter '{spec.name}': expected {expected}, found {found} ({exc})") from None
        values[spec.name] = spec.validate(node.get_parameter(spec.name).value)
    for spec in missing:  # left undeclared when not needed (e.g. the nominal model of a pid base)
        if spec.required_by(values):
            raise ConfigError(
                f"parameter '{spec.name}': expected a value from the robot's params file ({spec.kind}"
                f"{', ' + spec.unit if spec.unit else ''}: robot-specific, no default), found none; "
                f"pass --params-file with the robot's params (config/residual_control.yaml for the built-in arm)")
    return values


def validate_changes(specs: Mapping[str, ParamSpec], params: Iterable[Parameter]) -> dict[str, object]:
    """Validate a SetParameters request against the specs (raises ConfigError)."""
    changes = {}
    for p in params:
        spec = specs.get(p.name)
        if spec is None:
            continue  # use_sim_time and other rclpy-owned parameters
        if spec.read_only:
            raise ConfigError(f"parameter '{p.name}': read-only: expected no change, found a request to set "
                              f"{describe(p.value)}")
        changes[p.name] = spec.validate(p.value)
    return changes


def mixer_changes(changes: Mapping[str, object]) -> dict[str, object]:
    """Return the part of validated parameter changes that reconfigures the mixer."""
    return {k: v for k, v in changes.items() if k in MixerConfig.__dataclass_fields__}


def result(error: str = "") -> SetParametersResult:
    return SetParametersResult(successful=not error, reason=error)


def refused(node, exc: Exception) -> SetParametersResult:
    """Report a parameter change as refused: logged as a warning, its reason returned to the caller."""
    node.get_logger().warning(f"rejected parameter change: {exc}")
    return result(str(exc))


def applied(node, changes: Mapping[str, object]) -> SetParametersResult:
    """Report a parameter change as applied: each new value logged."""
    for k, v in changes.items():
        node.get_logger().info(f"parameter {k} set to {v}")
    return result()
