"""Base controllers: the trusted nominal control law a_base = f(state, reference).

Pure numpy, time passed in. All controllers share one small interface:
``compute(q, qd, q_ref, qd_ref, t) -> torque`` and ``reset()``; arrays are
ordered by the controller's ``joints``.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Mapping, Sequence

import numpy as np

from .dynamics import NominalModel
from .errors import ConfigError, ObservationError, describe
from .params import joint_vector as _vec


class BaseController(ABC):
    """Interface of every base controller."""

    kind: str = "base"

    def __init__(self, joints: Sequence[str], command_min, command_max) -> None:
        self.joints = tuple(joints)
        n = len(self.joints)
        if n == 0:
            raise ConfigError("joints: expected at least one joint, found none")
        self.command_min = _vec("command_min", command_min, n)
        self.command_max = _vec("command_max", command_max, n)
        if np.any(self.command_min > self.command_max):
            raise ConfigError(
                f"command_min/command_max: expected min <= max, found {self.command_min.tolist()} "
                f"and {self.command_max.tolist()}")

    @property
    def dof(self) -> int:
        return len(self.joints)

    def _check(self, **arrays) -> None:
        for name, a in arrays.items():
            if a.shape != (self.dof,):
                raise ObservationError(f"{name}: expected shape ({self.dof},), found {a.shape}")
            if not np.isfinite(a).all():
                raise ObservationError(f"{name}: expected finite values, found {a.tolist()}")

    def compute(self, q, qd, q_ref, qd_ref, t: float) -> np.ndarray:
        q, qd, q_ref, qd_ref = (np.asarray(x, dtype=float) for x in (q, qd, q_ref, qd_ref))
        self._check(q=q, qd=qd, q_ref=q_ref, qd_ref=qd_ref)
        if not math.isfinite(t):
            raise ObservationError(f"t: expected a finite time, found {t}")
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, with the inputs
            tau = np.asarray(self._compute(q, qd, q_ref, qd_ref, float(t)), dtype=float)
        if not np.isfinite(tau).all():  # finite inputs can still overflow (np.clip passes NaN on)
            raise ObservationError(f"{self.kind}: expected finite torques, found {describe(tau)} "
                                   f"(from q {describe(q)}, q_ref {describe(q_ref)}, qd_ref {describe(qd_ref)})")
        return np.clip(tau, self.command_min, self.command_max)

    @abstractmethod
    def _compute(self, q, qd, q_ref, qd_ref, t: float) -> np.ndarray: ...

    def reset(self) -> None:
        """Forget internal state (integrators, filters)."""

    def carry_state_from(self, old: "BaseController") -> None:
        """Take over ``old``'s internal state (a live parameter change builds a new controller: no bump)."""

    @abstractmethod
    def describe(self) -> dict:
        """Type and gains, JSON-serialisable (recorded in model metadata)."""


class PID(BaseController):
    """Per-joint PID.

    * P on the position error, D on the *measurement* (finite difference of q,
      first-order low-pass at ``derivative_filter_hz``) plus the velocity
      reference, so a reference step gives no derivative kick;
    * I with a clamp (``integral_limit``, on the integral term in N m) and
      conditional integration: the integrator does not grow further into a
      saturated output.
    """

    kind = "pid"
    #: Longest time step (s) integrated at once: a gap in the joint states (or a clock jump forward) adds
    #: at most this much of the error to the integral, not the whole gap's; a clock jump back by more
    #: restarts the filters and the integral, a shorter step back (a state out of order) is skipped.
    MAX_DT = 0.1

    def __init__(self, joints, kp, ki, kd, command_min, command_max,
                 integral_limit=None, derivative_filter_hz: float = 40.0) -> None:
        super().__init__(joints, command_min, command_max)
        n = self.dof
        self.kp = _vec("kp", kp, n, nonneg=True)
        self.ki = _vec("ki", ki, n, nonneg=True)
        self.kd = _vec("kd", kd, n, nonneg=True)
        limit = np.full(n, np.inf) if integral_limit is None else _vec("integral_limit", integral_limit, n, True)
        self.integral_limit = limit
        if not (math.isfinite(derivative_filter_hz) and derivative_filter_hz > 0):
            raise ConfigError(f"derivative_filter_hz: expected a number > 0, found {derivative_filter_hz}")
        self.derivative_filter_hz = float(derivative_filter_hz)
        self.reset()

    def reset(self) -> None:
        self._integral = np.zeros(self.dof)  # integral term, N m
        self._q_prev: np.ndarray | None = None
        self._t_prev: float | None = None
        self._qd_filt = np.zeros(self.dof)

    def carry_state_from(self, old: BaseController) -> None:
        if isinstance(old, PID) and old.dof == self.dof:
            self._integral = np.clip(old._integral, -self.integral_limit, self.integral_limit)
            self._q_prev = None if old._q_prev is None else old._q_prev.copy()
            self._t_prev, self._qd_filt = old._t_prev, old._qd_filt.copy()

    def _compute(self, q, qd, q_ref, qd_ref, t):
        dt = 0.0 if self._t_prev is None else t - self._t_prev
        if -self.MAX_DT <= dt < 0:  # a state out of order: the output of the state it had, nothing updated
            return self._law(q_ref - q, qd_ref)
        if self._q_prev is not None and dt > 0:
            raw = (q - self._q_prev) / dt
            alpha = dt / (dt + 1.0 / (2 * math.pi * self.derivative_filter_hz))
            self._qd_filt = self._qd_filt + alpha * (raw - self._qd_filt)
        elif self._q_prev is None:
            self._qd_filt = np.zeros(self.dof)
        error = q_ref - q
        unsat = self._law(error, qd_ref)
        if dt > 0:
            grow = self.ki * error * min(dt, self.MAX_DT)
            saturated_hi = (unsat >= self.command_max) & (grow > 0)
            saturated_lo = (unsat <= self.command_min) & (grow < 0)
            grow = np.where(saturated_hi | saturated_lo, 0.0, grow)
            self._integral = np.clip(self._integral + grow, -self.integral_limit, self.integral_limit)
        if dt >= 0:
            self._q_prev, self._t_prev = q.copy(), t
        else:  # time went backwards by more than MAX_DT (a simulator reset): restart the filters
            self.reset()
            self._q_prev, self._t_prev = q.copy(), t
        return self._law(error, qd_ref)

    def _law(self, error, qd_ref):
        """Return the PID law: kp e + kd (qd_ref - filtered qd) + the integral term, as they stand."""
        return self.kp * error + self.kd * (qd_ref - self._qd_filt) + self._integral

    def describe(self) -> dict:
        return {"type": self.kind, "kp": self.kp.tolist(), "ki": self.ki.tolist(), "kd": self.kd.tolist(),
                "integral_limit": self.integral_limit.tolist(),
                "derivative_filter_hz": self.derivative_filter_hz}


class PDGravity(BaseController):
    """PD plus gravity compensation from a nominal rigid-body model.

    tau = kp (q_ref - q) + kd (qd_ref - qd) + g_nominal(q)
    """

    kind = "pd_gravity"

    def __init__(self, joints, kp, kd, command_min, command_max, model: NominalModel) -> None:
        super().__init__(joints, command_min, command_max)
        if model is None:
            raise ConfigError(f"{self.kind}: expected a nominal model (the robot's description), found none")
        if model.dof != self.dof:
            raise ConfigError(f"model: expected {self.dof} joints (one per joint), found {model.dof}")
        self.kp = _vec("kp", kp, self.dof, nonneg=True)
        self.kd = _vec("kd", kd, self.dof, nonneg=True)
        self.model = model

    def _compute(self, q, qd, q_ref, qd_ref, t):
        return self.kp * (q_ref - q) + self.kd * (qd_ref - qd) + self.model.gravity_torque(q)

    def describe(self) -> dict:
        return {"type": self.kind, "kp": self.kp.tolist(), "kd": self.kd.tolist(), "model": self.model.describe()}


class ComputedTorque(PDGravity):
    """Inverse dynamics of the nominal model along the reference plus PD ("PD+", Paden and Panja 1988).

    tau = ID_nominal(q, qd, qdd_ref) + kp (q_ref - q) + kd (qd_ref - qd),
    ID(q, qd, qdd) = M(q) qdd + C(q, qd) qd + g(q). The reference carries positions and velocities;
    qdd_ref is the finite difference of qd_ref low-passed at ``accel_filter_hz`` (0 at the first call
    and after a time jump back). The same kp, kd (N m/rad, N m s/rad) as pd_gravity.
    """

    kind = "computed_torque"

    def __init__(self, joints, kp, kd, command_min, command_max, model: NominalModel,
                 accel_filter_hz: float = 40.0) -> None:
        super().__init__(joints, kp, kd, command_min, command_max, model)
        if not (math.isfinite(accel_filter_hz) and accel_filter_hz > 0):
            raise ConfigError(f"derivative_filter_hz: expected a number > 0, found {accel_filter_hz}")
        self.accel_filter_hz = float(accel_filter_hz)
        self.reset()

    def reset(self) -> None:
        self._qd_ref_prev: np.ndarray | None = None
        self._t_prev: float | None = None
        self._qdd_ref = np.zeros(self.dof)

    def _compute(self, q, qd, q_ref, qd_ref, t):
        dt = None if self._t_prev is None else t - self._t_prev
        if dt is not None and dt > 0:
            raw = (qd_ref - self._qd_ref_prev) / dt
            alpha = dt / (dt + 1.0 / (2 * math.pi * self.accel_filter_hz))
            self._qdd_ref = self._qdd_ref + alpha * (raw - self._qdd_ref)
        elif dt is None or dt < 0:
            self._qdd_ref = np.zeros(self.dof)
        if dt is None or dt != 0:
            self._qd_ref_prev, self._t_prev = qd_ref.copy(), t
        return (self.model.inverse_dynamics(q, qd, self._qdd_ref) + self.kp * (q_ref - q)
                + self.kd * (qd_ref - qd))

    def describe(self) -> dict:
        return {**super().describe(), "accel_filter_hz": self.accel_filter_hz}


def make_base_controller(params: Mapping[str, object], model: NominalModel | None = None) -> BaseController:
    """Build a base controller from flat params; ``model``: the nominal model of pd_gravity / computed_torque / mpc.

    The nodes and the training env build ``model`` from the ``robot`` parameter
    (:func:`residual_control.robot.nominal.nominal_model`).
    """
    p = dict(params)
    kind = p.get("controller_type", "pd_gravity")
    joints = p.get("joints")
    if not joints:
        raise ConfigError("joints: expected a list of joint names, found none")
    cmin, cmax = p.get("command_min"), p.get("command_max")
    required = ("kp", "kd", "command_min", "command_max")
    missing = [k for k in required if p.get(k) is None]
    if missing:
        raise ConfigError(f"base controller: expected parameters {list(required)}, missing {missing}")
    if kind == "pid":
        cutoff = p.get("derivative_filter_hz", 40.0)
        if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)):
            raise ConfigError(f"derivative_filter_hz: expected a number > 0, found {describe(cutoff)}")
        return PID(joints, p["kp"], p.get("ki", [0.0] * len(joints)), p["kd"], cmin, cmax,
                   p.get("integral_limit"), float(cutoff))
    if kind == "pd_gravity":
        return PDGravity(joints, p["kp"], p["kd"], cmin, cmax, model)
    if kind == "computed_torque":
        cutoff = p.get("derivative_filter_hz", 40.0)
        if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)):
            raise ConfigError(f"derivative_filter_hz: expected a number > 0, found {describe(cutoff)}")
        return ComputedTorque(joints, p["kp"], p["kd"], cmin, cmax, model, float(cutoff))
    if kind == "mpc":
        return _make_mpc(p, joints, cmin, cmax, model)
    raise ConfigError(f"controller_type: expected one of ['pid', 'pd_gravity', 'computed_torque', 'mpc'], "
                      f"found {kind!r}")


def _mpc_value(p: Mapping[str, object], leaf: str):
    """``mpc.<leaf>`` of flat node parameters or of a params file's nested ``mpc:`` section (which wins)."""
    nested = p.get("mpc")
    if isinstance(nested, Mapping) and leaf in nested:
        return nested[leaf]
    if f"mpc.{leaf}" in p:
        return p[f"mpc.{leaf}"]
    from .params import BASE_PARAMS, default_of
    return default_of(BASE_PARAMS, f"mpc.{leaf}")


def _make_mpc(p, joints, cmin, cmax, model):
    """Build the MPC base (core/mpc.py: imports osqp); position limits from the nominal model's description."""
    from .params import BASE_PARAMS, find_spec

    values = {}
    for leaf in ("horizon", "step", "position_weight", "velocity_weight", "acceleration_weight",
                 "solve_time_budget"):
        spec = find_spec(BASE_PARAMS, f"mpc.{leaf}")
        values[leaf] = spec.validate(spec.coerce(_mpc_value(p, leaf)))
    limits = getattr(getattr(model, "compiled", None), "position_limits", None)
    lo, hi = (None, None) if limits is None else limits
    try:
        from .mpc import MPC
    except ImportError as exc:
        raise ConfigError(f"controller_type mpc: expected the osqp package (pip install "
                          f"'residual_control[mpc]'), found none ({exc})") from None
    return MPC(joints, p["kp"], p["kd"], cmin, cmax, model, position_min=lo, position_max=hi, **values)
