"""The nominal rigid-body model the model-based parts of the loop use (the protocol, no implementation).

pd_gravity and computed_torque (base_controllers.py) and the mixer's damp safe stop (mixer.py) take
an object with this interface; ``residual_control.robot.dynamics`` builds one from a robot's
description (MuJoCo or Pinocchio), :func:`residual_control.robot.nominal.nominal_model` from a
node's parameters. Arrays are ordered as the controller's joints; SI units.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class NominalModel(Protocol):
    """Rigid-body dynamics tau = M(q) qdd + C(q, qd) qd + g(q) (+ viscous friction) of a fixed-base arm."""

    @property
    def dof(self) -> int: ...

    def gravity_torque(self, q) -> np.ndarray: ...

    def mass_matrix(self, q) -> np.ndarray: ...

    def inverse_dynamics(self, q, qd, qdd) -> np.ndarray: ...

    def describe(self) -> dict: ...
