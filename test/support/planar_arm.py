"""Analytic rigid-body model of the built-in planar arm (robots/planar2), a reference for the tests.

Pure numpy, derived by hand (Jacobians, Christoffel symbols): the tests check the description-based
nominal model (residual_control.robot.dynamics), the plant and the controllers against it. The
package itself knows robots only through their folders.

Conventions: joint i rotates link i about an axis normal to the plane of
motion. The absolute angle of link i is theta_i = q_0 + ... + q_i, measured
from the horizontal; positive angles lift the arm against gravity (+z up).
Link i's centre of mass lies at com_offsets[i] along the link; the payload is
a point mass at the tip of the last link.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class ArmModel:
    """Inertial parameters of a planar arm (SI units)."""

    link_lengths: Sequence[float] = (0.5, 0.4)
    link_masses: Sequence[float] = (2.0, 1.5)
    com_offsets: Sequence[float] = (0.25, 0.2)
    link_inertias: Sequence[float] = (0.045, 0.022)  # about the COM, kg m^2
    payload_mass: float = 0.2
    gravity: float = 9.81
    viscous_friction: Sequence[float] = field(default=(0.0, 0.0))  # N m s/rad

    def __post_init__(self) -> None:
        n = len(self.link_lengths)
        for name in ("link_masses", "com_offsets", "link_inertias", "viscous_friction"):
            value = getattr(self, name)
            if len(value) != n:
                raise ValueError(
                    f"ArmModel.{name}: expected {n} values (one per link), found {len(value)}"
                )
        arrays = [self.link_lengths, self.link_masses, self.com_offsets, self.link_inertias]
        if not all(np.all(np.isfinite(a)) for a in arrays) or not np.isfinite(self.payload_mass):
            raise ValueError("ArmModel: expected finite parameters, found a non-finite value")
        if self.payload_mass < 0 or np.any(np.asarray(self.link_masses) <= 0):
            raise ValueError("ArmModel: expected positive link masses and payload_mass >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> "ArmModel":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"ArmModel: unknown keys {sorted(unknown)}; expected a subset of {sorted(known)}"
            )
        kwargs = {}
        for k, v in values.items():
            kwargs[k] = tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else float(v)
        return cls(**kwargs)

    @property
    def dof(self) -> int:
        return len(self.link_lengths)

    def with_payload(self, payload_mass: float) -> "ArmModel":
        return ArmModel(
            self.link_lengths, self.link_masses, self.com_offsets, self.link_inertias,
            float(payload_mass), self.gravity, self.viscous_friction,
        )

    # ------------------------------------------------------------------ kinematics
    def _bodies(self, q: np.ndarray):
        """Yield (mass, inertia, com_xz, joint_positions) for each body incl. payload."""
        q = np.asarray(q, dtype=float)
        theta = np.cumsum(q)
        joints = np.zeros((self.dof + 1, 2))
        for i in range(self.dof):
            joints[i + 1] = joints[i] + self.link_lengths[i] * np.array(
                [np.cos(theta[i]), np.sin(theta[i])]
            )
        bodies = []
        for i in range(self.dof):
            com = joints[i] + self.com_offsets[i] * np.array([np.cos(theta[i]), np.sin(theta[i])])
            bodies.append((self.link_masses[i], self.link_inertias[i], com, i))
        if self.payload_mass > 0:
            bodies.append((self.payload_mass, 0.0, joints[-1], self.dof - 1))
        return bodies, joints

    def _jacobians(self, q: np.ndarray):
        bodies, joints = self._bodies(q)
        out = []
        for mass, inertia, com, link in bodies:
            jv = np.zeros((2, self.dof))
            jw = np.zeros(self.dof)
            for j in range(link + 1):
                r = com - joints[j]
                jv[:, j] = (-r[1], r[0])
                jw[j] = 1.0
            out.append((mass, inertia, jv, jw))
        return out

    def gravity_torque(self, q: np.ndarray) -> np.ndarray:
        """Joint torques that hold the arm still against gravity at q."""
        tau = np.zeros(self.dof)
        for mass, _inertia, jv, _jw in self._jacobians(q):
            tau += mass * self.gravity * jv[1]
        return tau

    def mass_matrix(self, q: np.ndarray) -> np.ndarray:
        m = np.zeros((self.dof, self.dof))
        for mass, inertia, jv, jw in self._jacobians(q):
            m += mass * jv.T @ jv + inertia * np.outer(jw, jw)
        return m

    def coriolis_torque(self, q: np.ndarray, qd: np.ndarray, eps: float = 1e-6) -> np.ndarray:
        """C(q, qd) qd from the Christoffel symbols of a numerically differentiated M(q)."""
        q = np.asarray(q, dtype=float)
        qd = np.asarray(qd, dtype=float)
        n = self.dof
        dm = np.zeros((n, n, n))  # dm[k] = dM/dq_k
        for k in range(n):
            dq = np.zeros(n)
            dq[k] = eps
            dm[k] = (self.mass_matrix(q + dq) - self.mass_matrix(q - dq)) / (2 * eps)
        c = np.zeros(n)
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    c[i] += 0.5 * (dm[k][i, j] + dm[j][i, k] - dm[i][j, k]) * qd[j] * qd[k]
        return c

    def describe(self) -> dict:
        return {"type": "planar", "link_lengths": list(self.link_lengths), "link_masses": list(self.link_masses),
                "com_offsets": list(self.com_offsets), "link_inertias": list(self.link_inertias),
                "payload_mass": self.payload_mass}

    def inverse_dynamics(self, q, qd, qdd) -> np.ndarray:
        """Return tau = M(q) qdd + C(q, qd) qd + g(q) + viscous friction."""
        return (
            self.mass_matrix(q) @ np.asarray(qdd, dtype=float)
            + self.coriolis_torque(q, qd)
            + self.gravity_torque(q)
            + np.asarray(self.viscous_friction) * np.asarray(qd, dtype=float)
        )


#: The built-in arm's joints and the nominal damping / Coulomb friction of description/arm.mjcf.xml.
JOINT_NAMES = ("shoulder", "elbow")
NOMINAL_DAMPING = (0.5, 0.3)
NOMINAL_FRICTIONLOSS = (0.8, 0.5)


def true_arm_model(params, base: ArmModel | None = None) -> ArmModel:
    """Return the analytic model of a plant (PlantParams) of the built-in arm: its payload and damping."""
    base = base if base is not None else ArmModel()
    return ArmModel(
        link_lengths=tuple(base.link_lengths), link_masses=tuple(base.link_masses),
        com_offsets=tuple(base.com_offsets), link_inertias=tuple(base.link_inertias),
        payload_mass=float(params.payload_mass), gravity=base.gravity,
        viscous_friction=tuple(d * params.damping_scale for d in NOMINAL_DAMPING),
    )
