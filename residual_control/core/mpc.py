"""Joint-space model-predictive base controller on the robot's nominal model, solved by OSQP.

Formulation (why this one)
--------------------------
The nominal rigid-body model tau = M(q) qdd + b(q, qd) (b = C(q, qd) qd + g(q)) is exactly
invertible: with the joint accelerations u as the decision variables, every joint is a double
integrator q+ = q + h qd + h^2/2 u, qd+ = qd + h u. So the prediction is LINEAR and exact for the
nominal model, the cost is a constant quadratic, and the nonlinearity moves into the torque
constraints, tau_min <= M(q0) u_k + b(q0, qd0) <= tau_max, linearised at the current state (M and
b held over the horizon; the first step, the one applied, is exact). A linearisation of the full
dynamics about the current state (A, B from finite differences of the forward dynamics) would give
the same first step at a higher cost per period (7 forward-dynamics Jacobians for a 7-DoF arm) and a
cost in torque units whose weights differ per joint; in acceleration units one set of weights gives
every joint the same closed-loop bandwidth.

The QP (condensed: the states are eliminated, U = [u_joint0_k0..kN-1, u_joint1_k0.., ...]):

    min_U  sum_k  wq |q_k - q_ref,k|^2 + wv |qd_k - qd_ref,k|^2 + wa |u_k|^2
    s.t.   tau_min - b0 <= M0 u_k <= tau_max - b0             k = 0..N-1  (N n rows, M0's pattern)
           q_min - free_k <= S_k U <= q_max - free_k         k = 1..N    (joints with finite limits)

with the reference extrapolated at constant velocity over the horizon (q_ref,k = q_ref + k h
qd_ref, qd_ref,k = qd_ref: the base controllers get a position and a velocity setpoint, no
preview). The Hessian is block diagonal per joint and CONSTANT (set up once); per call only the
linear term, the bounds and the M0 entries of the constraint matrix change (``update``), and the
solver starts from the previous solution (OSQP's warm start). The command is tau = M0 u_0 + b0,
clipped to the command limits like every base controller's.

Fallback: when the solver reports anything but solved (infeasible, the iteration or the time limit,
an error) or its wall-clock time exceeds ``solve_time_budget``, the period's command is the
controller's own PD plus gravity law kp (q_ref - q) + kd (qd_ref - qd) + g(q) (the pd_gravity base
with the same gains), and ``fallbacks`` counts it (the base_controller node puts it on /diagnostics).

Not modelled: the joint velocity limits (robot.yaml ``limits.velocity``; the robot's own limiter
acts on them) and any preview of the reference. The first solve after a start is cold
(~100+ OSQP iterations): on a loaded machine it may be the first counted fallback.

``osqp`` and ``scipy`` are imported when an MPC is built (setup.py extra ``mpc``): the nodes start
without them for every other base controller. Pure numpy otherwise; time is passed in (the solve
time budget is measured with ``clock``, default :func:`time.perf_counter`).
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np

from .base_controllers import BaseController
from .dynamics import NominalModel
from .errors import ConfigError
from .params import joint_vector as _vec

#: OSQP status values that give a usable solution (an inaccurate one is still clipped to the command limits).
_SOLVED = ("solved", "solved inaccurate")

#: OSQP adapts its step size rho every this many iterations (a fixed count: deterministic iterates).
ADAPTIVE_RHO_INTERVAL = 25


def _positive(name: str, value, lo: float = 0.0, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= lo:
        raise ConfigError(f"{name}: expected a number > {lo:g}, found {value!r}")
    if integer and int(value) != value:
        raise ConfigError(f"{name}: expected an integer, found {value!r}")
    return int(value) if integer else float(value)


class MPC(BaseController):
    """Feedback-linearised joint-space MPC on the nominal model (module docstring), OSQP, PD+gravity fallback."""

    kind = "mpc"

    def __init__(self, joints: Sequence[str], kp, kd, command_min, command_max, model: NominalModel, *,
                 horizon: int = 10, step: float = 0.01, position_weight: float = 1e4,
                 velocity_weight: float = 10.0, acceleration_weight: float = 1e-3,
                 solve_time_budget: float = 0.005, position_min=None, position_max=None,
                 max_iter: int = 400, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(joints, command_min, command_max)
        if model is None:
            raise ConfigError(f"{self.kind}: expected a nominal model (the robot's description), found none")
        if model.dof != self.dof:
            raise ConfigError(f"model: expected {self.dof} joints (one per joint), found {model.dof}")
        self.model = model
        self.kp = _vec("kp", kp, self.dof, nonneg=True)
        self.kd = _vec("kd", kd, self.dof, nonneg=True)
        self.horizon = _positive("mpc.horizon", horizon, integer=True)
        self.step = _positive("mpc.step", step)
        self.position_weight = _positive("mpc.position_weight", position_weight)
        self.velocity_weight = float(velocity_weight)
        if not (math.isfinite(self.velocity_weight) and self.velocity_weight >= 0):
            raise ConfigError(f"mpc.velocity_weight: expected a number >= 0, found {velocity_weight!r}")
        self.acceleration_weight = _positive("mpc.acceleration_weight", acceleration_weight)
        self.solve_time_budget = _positive("mpc.solve_time_budget", solve_time_budget)
        self.max_iter = _positive("max_iter", max_iter, integer=True)
        n = self.dof
        lo = np.full(n, -np.inf) if position_min is None else np.array(position_min, dtype=float).reshape(-1)
        hi = np.full(n, np.inf) if position_max is None else np.array(position_max, dtype=float).reshape(-1)
        if lo.shape != (n,) or hi.shape != (n,):
            raise ConfigError(f"position limits: expected {n} values each (one per joint), found "
                              f"{lo.size} and {hi.size}")
        if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo >= hi):
            raise ConfigError(f"position limits: expected lower < upper, found {lo.tolist()} and {hi.tolist()}")
        self.position_min, self.position_max = lo, hi
        self._clock = clock
        self._setup()
        self.reset()

    # ------------------------------------------------------------------ the QP, built once
    def _setup(self) -> None:
        import osqp
        from scipy import sparse

        n, N, h = self.dof, self.horizon, self.step
        k = np.arange(1, N + 1)
        # Per joint: q_k = q0 + k h qd0 + Sq[k-1] @ u,  qd_k = qd0 + Sv[k-1] @ u  (u: that joint's N accelerations).
        diff = k[:, None] - np.arange(N)[None, :]  # k - j
        Sq = np.where(diff >= 1, (diff - 0.5) * h * h, 0.0)
        Sv = np.where(diff >= 1, h, 0.0)
        wq, wv, wa = self.position_weight, self.velocity_weight, self.acceleration_weight
        H = 2.0 * (wq * Sq.T @ Sq + wv * Sv.T @ Sv + wa * np.eye(N))
        self._Sq, self._Sv, self._k = Sq, Sv, k
        # Linear term per joint: 2 (wq Sq^T (free_q - ref_q) + wv Sv^T (free_v - ref_v)).
        self._Gq, self._Gv = 2.0 * wq * Sq.T, 2.0 * wv * Sv.T
        P = sparse.block_diag([sparse.csc_matrix(np.triu(H))] * n, format="csc")
        # Torque rows (k, i): sum_j M0[i, j] u[j*N + k]; the full pattern of M0, values set per call.
        rows, cols = [], []
        for kk in range(N):
            for i in range(n):
                for j in range(n):
                    rows.append(kk * n + i)
                    cols.append(j * N + kk)
        self._tau_rows = N * n
        blocks_r, blocks_c, blocks_v = list(rows), list(cols), [1.0] * len(rows)
        limited = np.flatnonzero(np.isfinite(self.position_min) | np.isfinite(self.position_max))
        self._limited = limited
        r0 = self._tau_rows
        for idx, j in enumerate(limited):
            for kk in range(N):
                for jj in range(kk + 1):
                    blocks_r.append(r0 + idx * N + kk)
                    blocks_c.append(j * N + jj)
                    blocks_v.append(Sq[kk, jj])
        m = r0 + len(limited) * N
        A = sparse.csc_matrix((blocks_v, (blocks_r, blocks_c)), shape=(m, n * N))
        # Where each M0 entry lands in A.data (CSC order), so an update writes values only.
        probe = sparse.csc_matrix((np.arange(1, len(blocks_v) + 1, dtype=float), (blocks_r, blocks_c)),
                                  shape=(m, n * N))
        order = probe.data.astype(int) - 1  # A.data[p] came from triplet order[p]
        inv = np.empty(len(order), dtype=int)
        inv[order] = np.arange(len(order))
        self._m_slots = inv[: len(rows)]  # triplet t < len(rows) is M0[i, j] of step kk
        self._m_index = (np.array(rows) % n, np.array(cols) // N)
        self._A_data = A.data.copy()
        self._m = m
        self._l = np.full(m, -np.inf)
        self._u = np.full(m, np.inf)
        self._solver = osqp.OSQP()
        self._solver.setup(P=P, q=np.zeros(n * N), A=A, l=self._l.copy(), u=self._u.copy(), verbose=False,
                           warm_starting=True, polishing=False, max_iter=self.max_iter, eps_abs=1e-4,
                           eps_rel=1e-4, time_limit=self.solve_time_budget, check_termination=5,
                           # rho adapted every 25 iterations, not after a share of the measured setup
                           # time (OSQP's default): the same problem gives the same iterates on a
                           # loaded machine, so a solve, and a training on this base, is reproducible.
                           adaptive_rho_interval=ADAPTIVE_RHO_INTERVAL)
        self._status_ok = _SOLVED

    def reset(self) -> None:
        #: Periods whose command was the PD plus gravity fallback, and the last reason.
        self.fallbacks = 0
        self.last_fallback_reason = ""
        self.solves = 0
        #: Wall-clock time of the last QP solve (s) and OSQP's iteration count.
        self.last_solve_time = float("nan")
        self.last_iterations = 0
        #: The planned acceleration of the first step (rad/s^2) of the last successful solve.
        self.last_acceleration = np.zeros(self.dof)
        #: The planned accelerations (joints x horizon steps) of the last successful solve.
        self.last_plan = np.zeros((self.dof, self.horizon))

    # ------------------------------------------------------------------ one period
    def _fallback(self, q, qd, q_ref, qd_ref, reason: str) -> np.ndarray:
        self.fallbacks += 1
        self.last_fallback_reason = reason
        return self.kp * (q_ref - q) + self.kd * (qd_ref - qd) + self.model.gravity_torque(q)

    def _compute(self, q, qd, q_ref, qd_ref, t):
        n, N, h, k = self.dof, self.horizon, self.step, self._k
        M0 = np.asarray(self.model.mass_matrix(q), dtype=float)
        b0 = np.asarray(self.model.inverse_dynamics(q, qd, np.zeros(n)), dtype=float)
        if not (np.all(np.isfinite(M0)) and np.all(np.isfinite(b0))):
            return self._fallback(q, qd, q_ref, qd_ref, "nominal model not finite")
        # Free response and the reference over the horizon, per joint (rows: joints, columns: steps).
        free_q = q[:, None] + (k * h)[None, :] * qd[:, None]
        ref_q = q_ref[:, None] + (k * h)[None, :] * qd_ref[:, None]
        lin = (self._Gq @ (free_q - ref_q).T + self._Gv @ np.broadcast_to(qd - qd_ref, (N, n))).T.reshape(-1)
        self._A_data[self._m_slots] = M0[self._m_index]
        lo, hi = self._l, self._u
        r = self._tau_rows
        lo[:r] = np.tile(self.command_min - b0, N)
        hi[:r] = np.tile(self.command_max - b0, N)
        for idx, j in enumerate(self._limited):
            lo[r + idx * N: r + (idx + 1) * N] = self.position_min[j] - free_q[j]
            hi[r + idx * N: r + (idx + 1) * N] = self.position_max[j] - free_q[j]
        start = self._clock()
        try:
            self._solver.update(q=lin, l=lo, u=hi, Ax=self._A_data)
            res = self._solver.solve(raise_error=False)
        except Exception as exc:  # noqa: BLE001 - any solver error: the fallback law for this period
            self.last_solve_time = self._clock() - start
            return self._fallback(q, qd, q_ref, qd_ref, f"solver error: {exc}")
        self.last_solve_time = elapsed = self._clock() - start
        self.solves += 1
        self.last_iterations = int(res.info.iter)
        status = str(res.info.status)
        if status not in self._status_ok or res.x is None or not np.all(np.isfinite(res.x)):
            return self._fallback(q, qd, q_ref, qd_ref, f"solver status: {status}")
        if elapsed > self.solve_time_budget:
            return self._fallback(q, qd, q_ref, qd_ref,
                                  f"solve time {elapsed * 1e3:.3f} ms over the budget "
                                  f"{self.solve_time_budget * 1e3:.3f} ms")
        self.last_plan = res.x.reshape(n, N)
        u0 = self.last_plan[:, 0]
        self.last_acceleration = u0
        return M0 @ u0 + b0

    def predicted_positions(self, q, qd, plan=None) -> np.ndarray:
        """Return the positions (joints x horizon steps) the nominal model reaches under ``plan`` from (q, qd)."""
        plan = self.last_plan if plan is None else np.asarray(plan, dtype=float)
        q, qd = np.asarray(q, dtype=float), np.asarray(qd, dtype=float)
        return q[:, None] + (self._k * self.step)[None, :] * qd[:, None] + plan @ self._Sq.T

    def diagnostics(self) -> dict:
        """Counters for /diagnostics: solves, fallbacks, the last solve time and the last fallback's reason."""
        return {"mpc_solves": self.solves, "mpc_fallbacks": self.fallbacks,
                "mpc_last_solve_time_ms": round(self.last_solve_time * 1e3, 4)
                if math.isfinite(self.last_solve_time) else "",
                "mpc_last_iterations": self.last_iterations,
                "mpc_last_fallback_reason": self.last_fallback_reason}

    def describe(self) -> dict:
        return {"type": self.kind, "kp": self.kp.tolist(), "kd": self.kd.tolist(), "horizon": self.horizon,
                "step": self.step, "position_weight": self.position_weight,
                "velocity_weight": self.velocity_weight, "acceleration_weight": self.acceleration_weight,
                "solve_time_budget": self.solve_time_budget,
                "position_min": [float(x) if math.isfinite(x) else None for x in self.position_min],
                "position_max": [float(x) if math.isfinite(x) else None for x in self.position_max],
                "solver": "osqp", "model": self.model.describe()}
