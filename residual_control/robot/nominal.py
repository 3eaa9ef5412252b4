"""The nominal model of node parameters: the ``robot`` description, ``model.backend``, ``model.payload_mass``.

The base controller (pd_gravity, computed_torque) and the mixer's damp safe stop (damp_gravity) use it;
both call :func:`nominal_model` so they compensate the same gravity. Compiling a description takes
milliseconds to a second: the result is cached per (robot folder, joints, backend, payload), so a
node rebuilding its controller on a parameter change, or the fused node building both parts, compiles
once. Errors are :class:`residual_control.core.errors.ConfigError` naming the parameter.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Optional

from residual_control.core.errors import ConfigError
from residual_control.core.params import MODEL_BASED


def model_needed(params: Mapping[str, object]) -> bool:
    """Return whether ``params`` need the nominal model: a model-based base controller or damp_gravity."""
    return params.get("controller_type") in MODEL_BASED or params.get("damp_gravity") is True


def _flat(params: Mapping[str, object], key: str):
    if key in params:
        return params[key]
    section, _, leaf = key.partition(".")
    nested = params.get(section)
    return nested.get(leaf) if isinstance(nested, Mapping) else None


@lru_cache(maxsize=16)
def _cached(robot: str, joints: tuple, backend: str, payload_mass: float):
    from residual_control.robot.description import DescriptionError
    from residual_control.robot.dynamics import make_dynamics
    from residual_control.robot.folder import RobotFolderError, load_robot

    try:
        spec = load_robot(robot)
    except RobotFolderError as exc:
        raise ConfigError(f"robot: {exc}") from None
    if joints and tuple(joints) != spec.joints:
        raise ConfigError(f"joints: expected the joints of robot {spec.name!r} {list(spec.joints)} (robot.yaml), "
                          f"found {list(joints)}")
    try:
        return make_dynamics(spec.compile(), backend=backend, payload_mass=payload_mass)
    except (DescriptionError, ImportError, ValueError) as exc:
        raise ConfigError(f"robot {spec.name!r}: nominal model ({backend}): {exc}") from None


def nominal_model(params: Mapping[str, object], force: bool = False) -> Optional[object]:
    """Return the nominal model of node parameters, or None where nothing uses it (``force``: build it anyway).

    Reads ``robot`` (a robot folder or a shipped robot's name), ``model.backend`` (mujoco | pinocchio,
    default mujoco), ``model.payload_mass`` (kg) and checks ``joints`` against the robot's.
    """
    if not (force or model_needed(params)):
        return None
    robot = _flat(params, "robot")
    if not isinstance(robot, str) or not robot:
        raise ConfigError(f"robot: expected a robot folder or a shipped robot's name (the nominal model of "
                          f"{params.get('controller_type')!r} / damp_gravity), found {robot!r}")
    backend = _flat(params, "model.backend") or "mujoco"
    payload = _flat(params, "model.payload_mass")
    if isinstance(payload, bool) or not isinstance(payload, (int, float)) or not payload >= 0:
        raise ConfigError(f"model.payload_mass: expected a mass >= 0 kg, found {payload!r}")
    joints = params.get("joints") or ()
    return _cached(robot, tuple(joints), str(backend), float(payload))
