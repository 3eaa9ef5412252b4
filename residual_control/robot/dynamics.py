"""Nominal rigid-body dynamics of a compiled robot, for model-based base controllers and experts.

Both backends have the interface of ``residual_control.core.dynamics.NominalModel`` (``dof``,
``gravity_torque``, ``mass_matrix``, ``coriolis_torque``, ``inverse_dynamics``, ``with_payload``,
``payload_mass``, ``viscous_friction``) so either can stand in for it, with q, qd, qdd and every
returned vector ordered as ``CompiledRobot.joint_names``:

    inverse_dynamics(q, qd, qdd) = M(q) qdd + C(q, qd) qd + g(q) + viscous_friction * qd

M includes the description's joint armature (rotor inertia). Nothing else of the simulator's
passive or constraint forces is in the model: no joint damping, friction loss or limit forces
(pass ``viscous_friction`` to add a viscous term). ``payload_mass`` is a point mass at the payload
link, added to whatever mass the description itself puts there.

* ``MujocoDynamics``: MuJoCo's recursive Newton-Euler (``mj_rne``) and composite rigid body
  (``mj_crb``) algorithms on a private copy of the compiled model. No dependency beyond MuJoCo.
* ``PinocchioDynamics``: Pinocchio (``pin`` on PyPI, ``ros-<distro>-pinocchio`` on a robot), with its
  model built from the compiled MjModel (so both backends see the same inertias, including those
  MuJoCo derives from meshes). Needs ``pinocchio`` importable.

An instance owns scratch buffers: use one per thread.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, Optional, Sequence

import mujoco
import numpy as np

from .description import CompiledRobot

BACKENDS = ("mujoco", "pinocchio")


def _friction_vector(value: Optional[Sequence[float]], n: int) -> np.ndarray:
    if value is None:
        out = np.zeros(n)
    else:
        try:
            out = np.array(value, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"viscous_friction: expected {n} finite numbers (N m s/rad), found {value!r}") from None
        if out.size == 1 and n != 1:
            out = np.full(n, float(out[0]))
        if out.size != n or not np.all(np.isfinite(out)) or np.any(out < 0):
            raise ValueError(f"viscous_friction: expected {n} finite numbers >= 0 (N m s/rad), found {value!r}")
    out.setflags(write=False)
    return out


def _payload(value: float) -> float:
    try:
        mass = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"payload_mass: expected a finite mass >= 0 kg, found {value!r}") from None
    if not (math.isfinite(mass) and mass >= 0.0):
        raise ValueError(f"payload_mass: expected a finite mass >= 0 kg, found {value!r}")
    return mass


_mj_kinematics, _mj_comPos, _mj_comVel = mujoco.mj_kinematics, mujoco.mj_comPos, mujoco.mj_comVel
_mj_rne, _mj_crb, _mj_fullM = mujoco.mj_rne, mujoco.mj_crb, mujoco.mj_fullM
_ndarray, _float64 = np.ndarray, np.dtype(np.float64)


def _check_vector(x, n: int, what: str) -> np.ndarray:
    if type(x) is _ndarray and x.shape == (n,) and x.dtype == _float64:
        return x  # the common case, at control rate
    arr = np.asarray(x, dtype=float)
    if arr.shape != (n,):
        arr = arr.reshape(-1)
        if arr.size != n:
            raise ValueError(f"{what}: expected {n} values (one per joint), found {arr.size}")
    return arr


class _Dynamics:
    """What both backends share: the description, the payload and the viscous term."""

    backend = ""

    def __init__(self, compiled: CompiledRobot, payload_mass: float, viscous_friction) -> None:
        if not isinstance(compiled, CompiledRobot):
            raise TypeError(f"expected a CompiledRobot (from compile_robot), found {type(compiled).__name__}")
        self.compiled = compiled
        self._n = compiled.dof
        self._payload_mass = _payload(payload_mass)
        self._viscous = _friction_vector(viscous_friction, self._n)
        self._has_viscous = bool(np.any(self._viscous))

    @property
    def dof(self) -> int:
        return self._n

    @property
    def joint_names(self):
        return self.compiled.joint_names

    @property
    def payload_mass(self) -> float:
        return self._payload_mass

    @property
    def viscous_friction(self) -> np.ndarray:
        return self._viscous

    def with_payload(self, payload_mass: float):
        """Return the same model with another payload mass (kg)."""
        return type(self)(self.compiled, payload_mass=payload_mass, viscous_friction=self._viscous)

    def with_viscous_friction(self, viscous_friction):
        return type(self)(self.compiled, payload_mass=self._payload_mass, viscous_friction=viscous_friction)

    def describe(self) -> Dict[str, Any]:
        return {
            "backend": self.backend,
            "source": str(self.compiled.source),
            "joints": list(self.compiled.joint_names),
            "payload_link": self.compiled.payload_link,
            "payload_mass": self._payload_mass,
            "viscous_friction": self._viscous.tolist(),
            "armature": self._armature().tolist(),
            "gravity": self.compiled.model.opt.gravity.tolist(),
        }

    def _armature(self) -> np.ndarray:
        return self.compiled.model.dof_armature[self.compiled.dof_ids].copy()

    def _nominal_model(self) -> mujoco.MjModel:
        """Copy the compiled model, set the payload mass, drop passive and constraint terms."""
        m = copy.deepcopy(self.compiled.model)
        m.body_mass[self.compiled.payload_body_id] = self._payload_mass
        m.dof_damping[:] = 0.0
        m.dof_frictionloss[:] = 0.0
        m.jnt_stiffness[:] = 0.0
        off = mujoco.mjtDisableBit
        m.opt.disableflags |= int(off.mjDSBL_CONSTRAINT) | int(off.mjDSBL_SPRING) | int(off.mjDSBL_DAMPER)
        return m


class MujocoDynamics(_Dynamics):
    """Rigid-body dynamics with MuJoCo's ``mj_rne`` / ``mj_crb`` on a private copy of the compiled model."""

    backend = "mujoco"

    def __init__(self, compiled: CompiledRobot, payload_mass: float = 0.0,
                 viscous_friction: Optional[Sequence[float]] = None) -> None:
        super().__init__(compiled, payload_mass, viscous_friction)
        self._m = m = self._nominal_model()
        self._d = d = mujoco.MjData(m)
        n = self._n
        qpos_ids = np.asarray(compiled.qpos_ids)
        dof_ids = np.asarray(compiled.dof_ids)
        # nq == nv == n (a fixed-base arm of hinge/slide joints); skip the gathers when in order.
        self._in_order = bool(np.array_equal(qpos_ids, np.arange(n)) and np.array_equal(dof_ids, np.arange(n)))
        self._qpos_ids = qpos_ids
        self._dof_ids = dof_ids
        self._armature_q = m.dof_armature[dof_ids].copy()
        self._has_armature = bool(np.any(self._armature_q))
        self._out = np.zeros(m.nv)
        self._mfull = np.zeros((m.nv, m.nv))
        # Views into MjData, kept: each attribute access would build a new array object.
        self._qpos, self._qvel, self._qacc = d.qpos, d.qvel, d.qacc

    def _set(self, q, qd) -> None:
        n = self._n
        q = _check_vector(q, n, "q")
        if self._in_order:
            self._qpos[:] = q
        else:
            self._qpos[self._qpos_ids] = q
        if qd is None:
            self._qvel[:] = 0.0
        elif self._in_order:
            self._qvel[:] = qd
        else:
            self._qvel[self._dof_ids] = qd
        m, d = self._m, self._d
        _mj_kinematics(m, d)
        _mj_comPos(m, d)
        _mj_comVel(m, d)

    def _result(self) -> np.ndarray:
        return self._out.copy() if self._in_order else self._out[self._dof_ids]

    def gravity_torque(self, q) -> np.ndarray:
        """Joint torques that hold the arm still against gravity at q."""
        self._set(q, None)
        _mj_rne(self._m, self._d, 0, self._out)
        return self._result()

    def bias_torque(self, q, qd) -> np.ndarray:
        """C(q, qd) qd + g(q) (no viscous term)."""
        self._set(q, _check_vector(qd, self._n, "qd"))
        _mj_rne(self._m, self._d, 0, self._out)
        return self._result()

    def coriolis_torque(self, q, qd) -> np.ndarray:
        """C(q, qd) qd: the velocity-product torques."""
        return self.bias_torque(q, qd) - self.gravity_torque(q)

    def mass_matrix(self, q) -> np.ndarray:
        """M(q), joint-space inertia including armature."""
        q = _check_vector(q, self._n, "q")
        if self._in_order:
            self._qpos[:] = q
        else:
            self._qpos[self._qpos_ids] = q
        m, d = self._m, self._d
        _mj_kinematics(m, d)
        _mj_comPos(m, d)
        _mj_crb(m, d)
        _mj_fullM(m, d, self._mfull)
        if self._in_order:
            return self._mfull.copy()
        ids = self._dof_ids
        return self._mfull[np.ix_(ids, ids)]

    def inverse_dynamics(self, q, qd, qdd) -> np.ndarray:
        """Return tau = M(q) qdd + C(q, qd) qd + g(q) + viscous_friction * qd."""
        n = self._n
        qd = _check_vector(qd, n, "qd")
        qdd = _check_vector(qdd, n, "qdd")
        self._set(q, qd)
        if self._in_order:
            self._qacc[:] = qdd
        else:
            self._qacc[self._dof_ids] = qdd
        _mj_rne(self._m, self._d, 1, self._out)
        tau = self._result()
        if self._has_armature:
            tau += self._armature_q * qdd  # mj_rne leaves rotor inertia out; M has it
        if self._has_viscous:
            tau += self._viscous * qd
        return tau


def pinocchio_available() -> bool:
    try:
        import pinocchio  # noqa: F401
    except ImportError:
        return False
    return True


def _import_pinocchio():
    try:
        import pinocchio
    except ImportError as exc:
        raise ImportError(
            "the pinocchio dynamics backend needs the pinocchio module: expected it importable, found none "
            f"({exc}); install it with `pip install pin==4.1.0` (or `apt install ros-$ROS_DISTRO-pinocchio`), "
            "or use backend 'mujoco'") from None
    return pinocchio


def pinocchio_model_from_mujoco(m: mujoco.MjModel):
    """Build a Pinocchio model of a fixed-base hinge/slide tree compiled by MuJoCo (same inertias, armature).

    Built from the compiled model rather than with ``buildModelFromMJCF``/``buildModelFromUrdf``, so
    inertias MuJoCo derives (from meshes or geoms) and the welded joints are the same in both.
    """
    pin = _import_pinocchio()
    model = pin.Model()
    no_gravity = m.opt.disableflags & int(mujoco.mjtDisableBit.mjDSBL_GRAVITY)
    model.gravity.linear = np.zeros(3) if no_gravity else np.array(m.opt.gravity, dtype=float)
    body_joint = {0: 0}  # MuJoCo body -> Pinocchio joint id that moves it
    body_in_joint = {0: pin.SE3.Identity()}  # pose of the body frame in that joint's frame
    for b in range(1, m.nbody):
        parent = int(m.body_parentid[b])
        rel = pin.SE3(pin.Quaternion(*m.body_quat[b]).matrix(), np.array(m.body_pos[b], dtype=float))
        place = body_in_joint[parent] * rel
        jnum, jadr = int(m.body_jntnum[b]), int(m.body_jntadr[b])
        jid = body_joint[parent]
        for k in range(jnum):
            j = jadr + k
            axis = np.array(m.jnt_axis[j], dtype=float)
            anchor = pin.SE3(np.eye(3), np.array(m.jnt_pos[j], dtype=float))
            if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE:
                jm = pin.JointModelRevoluteUnaligned(axis)
            elif m.jnt_type[j] == mujoco.mjtJoint.mjJNT_SLIDE:
                jm = pin.JointModelPrismaticUnaligned(axis)
            else:
                raise ValueError(f"pinocchio backend: expected hinge or slide joints, found joint type {m.jnt_type[j]}")
            name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}"
            jid = model.addJoint(jid, jm, place * anchor, name)
            model.armature[model.joints[jid].idx_v] = float(m.dof_armature[m.jnt_dofadr[j]])
            place = anchor.inverse()
        body_joint[b], body_in_joint[b] = jid, place
        rot = pin.Quaternion(*m.body_iquat[b]).matrix()
        inertia = rot @ np.diag(m.body_inertia[b]) @ rot.T
        body = pin.Inertia(float(m.body_mass[b]), np.array(m.body_ipos[b], dtype=float), inertia)
        model.appendBodyToJoint(jid, place.act(body), pin.SE3.Identity())
    return model


class PinocchioDynamics(_Dynamics):
    """Rigid-body dynamics with Pinocchio (``rnea``, ``crba``, ``computeGeneralizedGravity``)."""

    backend = "pinocchio"

    def __init__(self, compiled: CompiledRobot, payload_mass: float = 0.0,
                 viscous_friction: Optional[Sequence[float]] = None) -> None:
        super().__init__(compiled, payload_mass, viscous_friction)
        pin = _import_pinocchio()
        self._pin = pin
        self._model = pinocchio_model_from_mujoco(self._nominal_model())
        self._data = self._model.createData()
        n = self._n
        # q in joint_names order -> Pinocchio's q (its joints are in tree order; one dof each).
        idx = np.array([self._model.joints[self._model.getJointId(name)].idx_q for name in compiled.joint_names],
                       dtype=int)
        self._in_order = bool(np.array_equal(idx, np.arange(n)))
        self._idx = idx
        self._lower = np.tril_indices(n, -1)
        self._qbuf = np.zeros(n)
        self._vbuf = np.zeros(n)
        self._abuf = np.zeros(n)

    def _pq(self, x, buf, what) -> np.ndarray:
        x = _check_vector(x, self._n, what)
        if self._in_order:
            return x
        buf[self._idx] = x
        return buf

    def _back(self, tau) -> np.ndarray:
        return np.array(tau, dtype=float) if self._in_order else np.asarray(tau)[self._idx].copy()

    def gravity_torque(self, q) -> np.ndarray:
        return self._back(self._pin.computeGeneralizedGravity(self._model, self._data, self._pq(q, self._qbuf, "q")))

    def bias_torque(self, q, qd) -> np.ndarray:
        return self._back(self._pin.nonLinearEffects(
            self._model, self._data, self._pq(q, self._qbuf, "q"), self._pq(qd, self._vbuf, "qd")))

    def coriolis_torque(self, q, qd) -> np.ndarray:
        return self.bias_torque(q, qd) - self.gravity_torque(q)

    def mass_matrix(self, q) -> np.ndarray:
        m = np.array(self._pin.crba(self._model, self._data, self._pq(q, self._qbuf, "q")), dtype=float)
        m[self._lower] = m.T[self._lower]  # crba fills the upper triangle
        if self._in_order:
            return m
        return m[np.ix_(self._idx, self._idx)]

    def inverse_dynamics(self, q, qd, qdd) -> np.ndarray:
        qd_arr = _check_vector(qd, self._n, "qd")
        tau = self._back(self._pin.rnea(self._model, self._data, self._pq(q, self._qbuf, "q"),
                                        self._pq(qd_arr, self._vbuf, "qd"), self._pq(qdd, self._abuf, "qdd")))
        if self._has_viscous:
            tau += self._viscous * qd_arr
        return tau


def make_dynamics(compiled: CompiledRobot, backend: str = "mujoco", payload_mass: float = 0.0,
                  viscous_friction: Optional[Sequence[float]] = None):
    """Return the nominal dynamics of ``compiled`` with the named backend (``"mujoco"`` or ``"pinocchio"``)."""
    if backend == "mujoco":
        return MujocoDynamics(compiled, payload_mass=payload_mass, viscous_friction=viscous_friction)
    if backend == "pinocchio":
        return PinocchioDynamics(compiled, payload_mass=payload_mass, viscous_friction=viscous_friction)
    raise ValueError(f"dynamics backend: expected one of {list(BACKENDS)}, found {backend!r}")
