"""Identify the plant's parameters (``PlantParams``) from ordinary closed-loop logs.

The torque balance of the plant (:class:`~residual_control.sim.plant.MujocoPlant`) over one control
period k, averaged over the period, is linear in the parameters for a given latency::

    gain * u_k(L) = ID_0(x_k, a_k) + payload * ID_1(x_k, a_k) + damping_scale * D qd_k
                    + friction_scale * F sign(qd_k) [+ the optional effects below]

* ``u_k(L)``: the logged command (clamped to the effort limits) delayed by ``L`` physics steps and
  averaged over the period (a command is held for its period; the delay shifts it into the next);
* ``x_k``, ``a_k``: the mid-period position and velocity and the period's mean acceleration
  (the difference of the logged velocities over the period);
* ``ID_0`` and ``ID_1``: the description's inverse dynamics (MuJoCo ``mj_rne`` with the armature,
  :class:`~residual_control.robot.dynamics.MujocoDynamics`) with no payload, and its change per kg
  of payload (a point mass: the inverse dynamics is affine in it);
* ``D``, ``F``: the description's viscous damping and Coulomb friction loss per joint.

Divided by the gain, the command is the target and the dynamics terms the regressors, with the
coefficients ``1/gain, payload/gain, ...`` (a zero gain cannot explain a command, so dynamics terms
that cancel each other are no solution). Fit: least squares with each joint's rows weighted by the
inverse of its residual RMS (two passes), one fit per candidate latency on a grid of whole physics
steps; the latency with the smallest weighted residual wins. Rows where a joint barely moves
(|qd| < ``v_min``: static friction, no sign) are left out; every column and the target are smoothed
by the same centred moving average of ``smooth`` periods (a linear filter keeps the balance linear,
and it averages out the sensor noise that the closed loop puts into both the command and the
measured acceleration). ``instruments=True`` solves by instrumental variables instead (the
regressors ``smooth + 2`` periods before and after, which share no sample with the row).

Effects the simulator leaves out, where ``PlantParams`` has them: extra Coulomb friction per joint
(the fit then gives each joint's total dry friction: the description's share is the largest common
``friction_scale``, the rest ``coulomb_friction``) and a joint spring (``joint_stiffness`` towards
``joint_rest``: columns q_j and 1), chosen by forward selection: a family is added while it lowers
the weighted residual below ``effect_gain`` times the current one (fitted where the plant has none,
they trade off against the gain and the payload), and a joint's value is kept where it exceeds
``significance`` standard errors. ``link_mass_scale`` only for the links named (``links``): all links
together with the gain are not identifiable from torques and motion.
The sensor noise comes from the consistency of the logged positions and velocities:
``q[k+1] - q[k] - dt (qd[k] + qd[k+1]) / 2`` has std ``sqrt(2 + 2 (dt/2/T)^2) * sigma`` with
``T = VELOCITY_NOISE_TIMESCALE``.

Fit: R^2 and the residual RMS (N m of command) per joint. Uncertainty: the standard error of every
parameter from a moving-block bootstrap over the periods (blocks of ``block`` periods, ``bootstrap``
resamples, the latency fixed at its best value; half the central 68 % range of the resampled
values); the latency's own uncertainty is the range of grid values whose weighted residual lies
within 1 % of the best.

Refused, with errors naming what was expected and found: an episode of another robot (joint names),
too few moving periods (too short, no motion), and logs that do not determine the gain or the payload
(a near-singular fit or a relative standard error above ``max_relative_error``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from residual_control.logs.episode import Episode
from residual_control.sim.plant import VELOCITY_NOISE_TIMESCALE, PlantParams

#: The fewest usable (moving, complete) periods the fit accepts, over all episodes.
MIN_ROWS = 200
#: The largest condition number of the weighted, column-scaled regressor matrix accepted.
MAX_CONDITION = 1e6


class IdentificationError(ValueError):
    """The logs cannot identify the plant (what was expected and what was found)."""


@dataclass
class Identification:
    """The identified plant, the fit and the uncertainty of every parameter."""

    params: PlantParams
    std_error: dict                       # parameter -> standard error (same units)
    r2: list                              # per joint
    residual_rms: list                    # N m, per joint
    latency_steps: int
    latency_range_s: tuple                # the latencies fitting within 1 % of the best
    latency_rss: list                     # weighted RSS per candidate latency step
    rows: int
    episodes: int
    seconds: float
    joints: tuple
    extra: dict = field(default_factory=dict)   # fitted effects not in PlantParams (reported only)

    def randomization(self, k: float = 2.0, rel_floor: float = 0.05, rel_cap: float = 1.0) -> dict:
        """Return narrow ranges around the identified values.

        +- max(k x standard error, rel_floor x value), at most +- rel_cap x value (a weakly excited
        parameter: the whole plausible span, not beyond).

        Latency: the grid values within 1 % of the best fit, +- one physics step. Clipped to the
        parameters' valid values. Keys: PlantParams' scalar fields.
        """
        out = {}
        values = self.params.as_dict()
        for name, value in values.items():
            if not isinstance(value, (int, float)):
                continue
            if name == "actuator_latency":
                lo, hi = self.latency_range_s
                step = self.extra.get("physics_dt", 0.001)
                out[name] = (max(0.0, lo - step), hi + step)
                continue
            se = float(self.std_error.get(name, 0.0))
            half = max(k * se, rel_floor * abs(value))
            if abs(value) > 0:
                half = min(half, rel_cap * abs(value))
            lo, hi = value - half, value + half
            lo = max(lo, 1e-3 if name == "actuator_gain" else 0.0)
            out[name] = (float(lo), float(max(hi, lo)))
        return out

    def to_dict(self) -> dict:
        return {"params": self.params.as_dict(), "std_error": dict(self.std_error), "r2": list(self.r2),
                "residual_rms": list(self.residual_rms), "latency_steps": self.latency_steps,
                "latency_range_s": list(self.latency_range_s), "latency_rss": list(self.latency_rss),
                "rows": self.rows, "episodes": self.episodes, "seconds": self.seconds,
                "joints": list(self.joints), "extra": self.extra}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=float)


def _moving_average(x: np.ndarray, w: int) -> np.ndarray:
    """Centred moving average along axis 0 (edges: the shorter window), any trailing shape."""
    if w <= 1:
        return x
    k = np.ones(w) / w
    flat = x.reshape(len(x), -1)
    num = np.stack([np.convolve(flat[:, i], k, mode="same") for i in range(flat.shape[1])], axis=1)
    den = np.convolve(np.ones(len(x)), k, mode="same")[:, None]
    return (num / den).reshape(x.shape)


def _delayed_average(t: np.ndarray, command: np.ndarray, latency: float) -> tuple[np.ndarray, np.ndarray]:
    """Per period k (t[k]..t[k+1]): the mean of the command delayed by ``latency`` s; and validity.

    The command of row k is held from t[k] to t[k+1]. A window reaching before t[0] is invalid.
    """
    k = len(t)
    held = np.diff(t)
    cum = np.vstack([np.zeros((1, command.shape[1])), np.cumsum(command[:-1] * held[:, None], axis=0)])
    a, b = t[:-1] - latency, t[1:] - latency
    out = np.empty((k - 1, command.shape[1]))
    for j in range(command.shape[1]):
        out[:, j] = (np.interp(b, t, cum[:, j]) - np.interp(a, t, cum[:, j])) / held
    return out, a >= t[0] - 1e-12


class _Rows:
    """The period rows of one or more episodes, the regressors that do not depend on the latency."""

    def __init__(self, episodes: Sequence[Episode], plant, smooth: int, v_min: float,
                 links: Sequence[str] = (), iv_lag: int = 0) -> None:
        import copy
        import dataclasses

        import mujoco

        from residual_control.robot.dynamics import MujocoDynamics

        n = len(plant.joint_names)
        self.n = n
        c = plant.compiled
        d0 = MujocoDynamics(c, payload_mass=0.0)
        d1 = MujocoDynamics(c, payload_mass=1.0)
        # One model per link with that link's mass and inertia doubled: its inverse-dynamics share.
        dl = []
        for name in links:
            model = copy.deepcopy(c.model)
            i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
            model.body_mass[i] *= 2.0
            model.body_inertia[i] *= 2.0
            dl.append(MujocoDynamics(dataclasses.replace(c, model=model), payload_mass=0.0))
        self.links = tuple(links)
        self.iv_lag = int(iv_lag)
        limits = plant.torque_limits
        self.episodes = []
        for ep in episodes:
            ok = ep.complete()
            t = ep.t
            q, qd = ep.q, ep.qd
            cmd = np.clip(np.nan_to_num(ep.command), -limits, limits)
            dt = np.diff(t)
            qm = (q[:-1] + q[1:]) / 2
            vm = (qd[:-1] + qd[1:]) / 2
            acc = (qd[1:] - qd[:-1]) / dt[:, None]
            valid = ok[:-1] & ok[1:]
            id0 = np.zeros((len(dt), n))
            id1 = np.zeros((len(dt), n))
            idl = np.zeros((len(dl), len(dt), n))
            for i in np.flatnonzero(valid):
                id0[i] = d0.inverse_dynamics(qm[i], vm[i], acc[i])
                id1[i] = d1.inverse_dynamics(qm[i], vm[i], acc[i]) - id0[i]
                for li, d in enumerate(dl):
                    idl[li, i] = d.inverse_dynamics(qm[i], vm[i], acc[i]) - id0[i]
            moving = np.abs(vm) >= v_min  # per joint
            self.episodes.append({"t": t, "cmd": cmd, "qm": qm, "vm": vm, "id0": id0, "id1": id1, "idl": idl,
                                  "valid": valid, "moving": moving})
        self.smooth = smooth
        self.damping = plant.nominal_damping
        self.friction = plant.nominal_frictionloss

    def names(self, effects: Sequence[str]) -> list:
        n = self.n
        names = ["actuator_gain", "payload_mass", "damping_scale"]
        names += [f"friction_total[{j}]" for j in range(n)] if "coulomb_friction" in effects else ["friction_scale"]
        if "joint_stiffness" in effects:
            names += [f"joint_stiffness[{j}]" for j in range(n)] + [f"joint_stiffness_rest[{j}]" for j in range(n)]
        names += [f"link_mass_delta[{name}]" for name in self.links]
        return names

    def design(self, latency: float, effects: Sequence[str]):
        """Return (y, X, joint index, row id, names) stacked over joints and episodes for ``latency``.

        Torque balance: ``gain u = ID_0 + sum_i theta_i phi_i``, so the target is ``ID_0`` and the
        columns are ``u`` and ``-phi_i``.
        """
        n, w = self.n, self.smooth
        ys, xs, js, rid, zs = [], [], [], [], []
        offset = 0
        names = self.names(effects)
        for ep in self.episodes:
            u, inside = _delayed_average(ep["t"], ep["cmd"], latency)
            valid = ep["valid"] & inside
            vm, qm = ep["vm"], ep["qm"]
            sgn = np.sign(vm)
            cols = [u, -ep["id1"], -self.damping * vm]
            if "coulomb_friction" in effects:
                for j in range(n):  # the total Coulomb friction of joint j (N m)
                    c = np.zeros_like(vm)
                    c[:, j] = -sgn[:, j]
                    cols.append(c)
            else:
                cols.append(-self.friction * sgn)
            if "joint_stiffness" in effects:
                for j in range(n):  # k_j (q_j - rest_j) = k_j q_j - (k_j rest_j)
                    c = np.zeros_like(vm)
                    c[:, j] = -qm[:, j]
                    cols.append(c)
                for j in range(n):
                    c = np.zeros_like(vm)
                    c[:, j] = 1.0
                    cols.append(c)
            for li in range(len(self.links)):  # (scale - 1) x the link's share
                cols.append(-ep["idl"][li])
            # The command as the target, the dynamics as the regressors (coefficients p / gain, 1 / gain first):
            # a zero gain cannot explain the command, so a set of dynamics terms that cancel each other
            # (a spring and a negative payload against the links' gravity) is no solution.
            y, cols = cols[0], [ep["id0"]] + [-c for c in cols[1:]]
            if w > 1:
                # Smooth only runs of valid rows: a filter across a gap would mix unrelated periods.
                y = _moving_average(np.where(valid[:, None], y, 0.0), w)
                cols = [_moving_average(np.where(valid[:, None], c, 0.0), w) for c in cols]
                valid = valid & (_moving_average(valid.astype(float), w) > 1 - 1e-9)
            lag = self.iv_lag
            if lag > 0:
                # Instruments: each column averaged at k - lag and k + lag (lag > the smoothing window: none
                # of the samples, so none of the sensor noise, of row k), see the module docstring.
                ok_lag = np.zeros_like(valid)
                ok_lag[lag:-lag] = valid[:-2 * lag] & valid[2 * lag:]
                valid = valid & ok_lag
                inst = []
                for c in cols:
                    z = np.zeros_like(c)
                    z[lag:-lag] = (c[:-2 * lag] + c[2 * lag:]) / 2
                    inst.append(z)
            for j in range(n):
                rows = valid & ep["moving"][:, j]
                idx = np.flatnonzero(rows)
                ys.append(y[idx, j])
                xs.append(np.stack([c[idx, j] for c in cols], axis=1))
                zs.append(np.stack([c[idx, j] for c in (inst if lag > 0 else cols)], axis=1))
                js.append(np.full(len(idx), j))
                rid.append(idx + offset)
            offset += len(valid)
        return (np.concatenate(ys), np.concatenate(xs), np.concatenate(js), np.concatenate(rid), names,
                np.concatenate(zs))


def _solve(y, x, z, sw):
    """Weighted least squares (z is x) or instrumental variables: (Z'W X) theta = Z'W y."""
    xw, yw = x * sw[:, None], y * sw
    if z is x:
        return np.linalg.lstsq(xw, yw, rcond=None)[0]
    zw = z * sw[:, None]
    return np.linalg.lstsq(zw.T @ xw, zw.T @ yw, rcond=None)[0]


def _wls(y, x, j, n, weights=None, z=None):
    """Two-pass weighted fit: per-joint weights 1 / residual RMS. Returns theta, per-joint rms, weights."""
    w = np.ones(n) if weights is None else weights
    z = x if z is None else z
    for _ in range(2 if weights is None else 1):
        sw = w[j]
        theta = _solve(y, x, z, sw)
        r = y - x @ theta
        rms = np.array([math.sqrt(np.mean(r[j == i] ** 2)) if np.any(j == i) else float("nan") for i in range(n)])
        w = 1.0 / np.maximum(rms, 1e-9)
    return theta, rms, w


def _check_episode(ep: Episode, joints: Sequence[str], index: int) -> None:
    if not isinstance(ep, Episode):
        raise IdentificationError(f"episode {index}: expected an Episode, found {type(ep).__name__}")
    if tuple(ep.joints) != tuple(joints):
        raise IdentificationError(f"episode {index} ({ep.metadata.get('source', 'no source')}): expected the "
                                  f"robot's joints {list(joints)}, found {list(ep.joints)}")


def estimate_sensor_noise(episodes: Sequence[Episode]) -> float:
    """Position noise std (rad) from the consistency of logged positions and velocities (module docstring)."""
    parts = []
    for ep in episodes:
        ok = ep.complete()
        dt = np.diff(ep.t)
        r = (ep.q[1:] - ep.q[:-1]) - dt[:, None] * (ep.qd[1:] + ep.qd[:-1]) / 2
        good = ok[1:] & ok[:-1]
        if np.any(good):
            scale = np.sqrt(2.0 + 2.0 * (np.median(dt) / 2 / VELOCITY_NOISE_TIMESCALE) ** 2)
            parts.append(r[good] / scale)
    if not parts:
        return 0.0
    r = np.concatenate(parts)
    mad = np.median(np.abs(r - np.median(r, axis=0)), axis=0) * 1.4826
    return float(np.median(mad))


def one_step_prediction(episodes: Sequence[Episode], params: PlantParams, plant) -> tuple[list, float]:
    """Return the identified plant's one-period prediction RMS of the logged positions, and the noise.

    The RMS is per joint (rad); the noise, the position noise std it implies. Each period starts the
    plant at the logged (q, qd) and holds the logged commands as the latency shifts them (the previous
    period's for the first ``latency`` physics steps). Its error is
    ``n[k+1] - n[k] - dt m[k]`` for position noise n and velocity noise m (std n / T), so the noise
    std is the error's robust std over ``sqrt(2 + (dt / T)^2)``, plus what the model misses.
    """
    p = params.replace(actuator_latency=0.0, sensor_noise_std=0.0)
    plant.set_params(p)
    dt_phys = plant.physics_dt
    lat = params.actuator_latency
    errs = []
    for ep in episodes:
        ok = ep.complete()
        for k in range(1, ep.periods - 1):
            if not (ok[k] and ok[k + 1] and ok[k - 1]):
                continue
            period = float(ep.t[k + 1] - ep.t[k])
            if period <= 0:
                continue
            plant.reset(ep.q[k], ep.qd[k])
            first = min(lat, period)
            if first >= dt_phys / 2:
                plant.step(ep.command[k - 1], first)
            if period - first >= dt_phys / 2:
                plant.step(ep.command[k], period - first)
            errs.append(ep.q[k + 1] - plant.q)
    if not errs:
        return [float("nan")] * len(plant.joint_names), float("nan")
    e = np.asarray(errs)
    dt = float(np.median(np.concatenate([np.diff(ep.t) for ep in episodes])))
    robust = np.median(np.abs(e - np.median(e, axis=0)), axis=0) * 1.4826
    sigma = float(np.median(robust) / np.sqrt(2.0 + (dt / VELOCITY_NOISE_TIMESCALE) ** 2))
    return np.sqrt(np.mean(e ** 2, axis=0)).tolist(), sigma


def _available_effects() -> tuple:
    """Return the optional effects this PlantParams has (an older one has none)."""
    names = getattr(PlantParams, "effect_names", None)
    return tuple(names()) if callable(names) else ()


def identify(episodes: Sequence[Episode] | Episode, robot=None, *, physics_dt: float = 0.001,
             max_latency_steps: int = 10, smooth: int = 20, v_min: float = 0.05, bootstrap: int = 100,
             instruments: bool = False,
             block: int = 50, seed: int = 0, min_rows: int = MIN_ROWS, effects: bool = True,
             links: Sequence[str] | None = None, significance: float = 3.0, effect_gain: float = 0.8,
             max_relative_error: float = 0.5) -> Identification:
    """Identify PlantParams of ``robot`` (folder, name or RobotSpec; default the built-in arm) from episodes.

    ``effects``: also fit the optional effects PlantParams has (Coulomb friction per joint, a joint
    spring); an effect is kept only where it exceeds ``significance`` standard errors (else it is
    reported and left off: the neutral value). ``links``: the links whose ``link_mass_scale`` to fit
    (default none: scaling every link's mass and the actuator gain together changes the torque
    balance only through the armature, friction and damping, so all links at once are not
    identifiable from torques and motion; name the one or two that differ). See the module docstring.
    """
    from residual_control.sim.plant import MujocoPlant

    if isinstance(episodes, Episode):
        episodes = [episodes]
    episodes = list(episodes)
    if not episodes:
        raise IdentificationError("identify: expected at least one episode, found none")
    plant = MujocoPlant(robot=robot, physics_dt=physics_dt)
    joints = plant.joint_names
    for i, ep in enumerate(episodes):
        _check_episode(ep, joints, i)
    available = _available_effects() if effects else ()
    fit_effects = [e for e in ("coulomb_friction", "joint_stiffness") if e in available]
    links = list(links or ())
    if links and "link_mass_scale" not in available:
        raise IdentificationError(f"identify: links {links}: expected a PlantParams with link_mass_scale, found "
                                  f"none")
    unknown = [name for name in links if name not in plant.link_names]
    if unknown:
        raise IdentificationError(f"identify: links: expected names among {list(plant.link_names)}, found "
                                  f"{links} (unknown {unknown})")
    iv_lag = smooth + 2 if instruments else 0
    rows = _Rows(episodes, plant, smooth, v_min, links, iv_lag)
    n = len(joints)
    # Grid over the latency (whole physics steps); the per-joint weights of the zero-latency fit for all.
    weights = None

    def grid(effect_set):
        nonlocal weights
        rss, fits = [], []
        for L in range(max_latency_steps + 1):
            y, x, j, rid, names, z = rows.design(L * physics_dt, effect_set)
            if weights is None:
                used = len(np.unique(rid))
                if used < min_rows:
                    total = sum(ep.periods for ep in episodes)
                    raise IdentificationError(
                        f"identify: expected at least {min_rows} complete periods with a joint moving faster "
                        f"than {v_min} rad/s, found {used} (of {total} periods in {len(episodes)} episode(s)): "
                        f"too short or too little motion")
                _theta, _rms, weights = _wls(y, x, j, n, z=z)
            theta, _rms, _w = _wls(y, x, j, n, weights, z=z)
            r = (y - x @ theta) * weights[j]
            rss.append(float(np.sum(r ** 2) / len(r)))
            fits.append((y, x, j, rid, names, z))
        return rss, fits

    # Forward selection of the effects: add the family that lowers the best weighted residual most, while
    # it lowers it below effect_gain x the current one (a spring or a dry friction the description lacks
    # leaves a large structured residual; fitted where absent, they mostly trade off against the gain).
    chosen: list = []
    rss, fits = grid(chosen)
    selection = {"none": min(rss)}
    while True:
        trials = {}
        for fam in fit_effects:
            if fam not in chosen:
                r_, f_ = grid(chosen + [fam])
                trials[fam] = (min(r_), r_, f_)
                selection["+".join(chosen + [fam])] = min(r_)
        if not trials:
            break
        fam = min(trials, key=lambda k: trials[k][0])
        if trials[fam][0] > effect_gain * min(rss):
            break
        chosen.append(fam)
        rss, fits = trials[fam][1], trials[fam][2]
    best = int(np.argmin(rss))
    y, x, j, rid, names, z = fits[best]
    theta, rms, w = _wls(y, x, j, n, z=z)
    # Excitation: the weighted, column-scaled regressor must determine every parameter.
    xw = x * w[j][:, None]
    norms = np.linalg.norm(xw, axis=0)
    if np.any(norms == 0):
        missing = [names[i] for i in np.flatnonzero(norms == 0)]
        raise IdentificationError(f"identify: expected the logs to excite every parameter, found no signal "
                                  f"for {missing}")
    cond = float(np.linalg.cond(xw / norms))
    if not math.isfinite(cond) or cond > MAX_CONDITION:
        raise IdentificationError(f"identify: expected a well-determined fit (condition number <= "
                                  f"{MAX_CONDITION:g}), found {cond:.3g}: the logs do not excite the plant enough")
    # Moving-block bootstrap over the periods (the latency and the weights fixed).
    rng = np.random.default_rng(seed)
    uniq, pos = np.unique(rid, return_inverse=True)
    nb = max(1, int(math.ceil(len(uniq) / block)))
    order = np.argsort(pos, kind="stable")
    starts = np.searchsorted(pos[order], np.arange(len(uniq) + 1))
    boots = []
    for _ in range(bootstrap):
        picks = rng.integers(0, max(1, len(uniq) - block + 1), nb)
        idx = np.concatenate([order[starts[p]:starts[min(p + block, len(uniq))]] for p in picks])
        boots.append(_solve(y[idx], x[idx], x[idx] if z is x else z[idx], w[j[idx]]))
    boots = np.asarray([_physical(b) for b in boots])
    theta_fit, theta = theta, _physical(theta)
    se_theta = _robust_se(boots) if len(boots) > 1 else np.zeros_like(theta)
    coef = {name: (float(theta[i]), float(se_theta[i])) for i, name in enumerate(names)}
    # The gain and the payload carry most of the torque (gravity, inertia) and must be determined; a weakly
    # excited damping or friction is reported with its (large) standard error, which widens its range.
    for key in ("actuator_gain", "payload_mass"):
        v, se = coef[key]
        if se > max_relative_error * max(abs(v), 1e-6) and se > 0.05:
            raise IdentificationError(
                f"identify: expected {key} determined to within {max_relative_error:.0%}, found "
                f"{v:.4g} +- {se:.3g}: the logs do not excite the plant enough")
    values, ses, kept = _to_params(theta, boots, names, joints, plant, significance)
    near = [L for L, r in enumerate(rss) if r <= rss[best] * 1.01]
    values["actuator_latency"] = best * physics_dt
    ses["actuator_latency"] = (max(near) - min(near)) * physics_dt / 2
    values["sensor_noise_std"] = 0.0
    params = _clip_params(values)
    # The sensor noise from the identified model's one-step prediction of the logged positions (what the
    # model cannot predict from the logged state and commands is the noise of two measurements, plus
    # the model's own error: an upper bound); the logs' consistency alone is kept when it is lower.
    one_step, sigma_pred = one_step_prediction(episodes, params, plant)
    sigma_cons = estimate_sensor_noise(episodes)
    params = params.replace(sensor_noise_std=float(min(sigma_pred, sigma_cons)))
    resid = y - x @ theta_fit
    r2 = []
    for i in range(n):
        m_ = j == i
        tot = float(np.sum((y[m_] - y[m_].mean()) ** 2))
        r2.append(1.0 - float(np.sum(resid[m_] ** 2)) / tot if tot > 0 else float("nan"))
    extra = {"physics_dt": physics_dt, "condition_number": cond, "coefficients": coef,
             "one_step_position_rms": one_step, "sensor_noise_consistency": sigma_cons,
             "sensor_noise_prediction": sigma_pred,
             "effects_tried": fit_effects, "effects_chosen": chosen, "effect_selection_rss": selection,
             "links_fitted": list(links), "effects_kept": kept,
             "smooth_periods": smooth, "v_min": v_min, "bootstrap": bootstrap, "block": block}
    return Identification(params=params, std_error=ses, r2=r2, residual_rms=rms.tolist(), latency_steps=best,
                          latency_range_s=(min(near) * physics_dt, max(near) * physics_dt), latency_rss=rss,
                          rows=int(len(uniq)), episodes=len(episodes),
                          seconds=float(sum(ep.seconds for ep in episodes)), joints=tuple(joints), extra=extra)


def _physical(theta: np.ndarray) -> np.ndarray:
    """Fitted coefficients (1 / gain, p_i / gain) -> (gain, p_i)."""
    gain = 1.0 / theta[0] if theta[0] != 0 else np.inf
    out = theta * gain
    out[0] = gain
    return out


def _robust_se(samples: np.ndarray) -> np.ndarray:
    """Return standard errors from bootstrap samples: half the 15.9-84.1 % range.

    The std for a normal spread; a few wild resamples (an instrumental-variable fit can give them)
    do not dominate it.
    """
    lo, hi = np.percentile(samples, [15.87, 84.13], axis=0)
    return (hi - lo) / 2


def _to_params(theta, boots, names, joints, plant, significance):
    """Map the fitted coefficients to PlantParams' values, bootstrap standard errors, and the effects kept.

    Coulomb friction: the fit gives the total per joint, ``friction_scale x nominal + coulomb_friction``;
    the description's share is the largest common scale (the smallest ratio total / nominal), the rest
    per joint. An effect is kept where its value exceeds ``significance`` standard errors.
    """
    n = len(joints)
    idx = {name: i for i, name in enumerate(names)}
    f_nom = plant.nominal_frictionloss

    def conv(th):
        out = {"actuator_gain": th[0], "payload_mass": th[1], "damping_scale": th[2]}
        if "friction_scale" in idx:
            out["friction_scale"] = th[idx["friction_scale"]]
        else:
            total = np.array([th[idx[f"friction_total[{j}]"]] for j in range(n)])
            ratio = np.where(f_nom > 0, total / np.where(f_nom > 0, f_nom, 1.0), np.inf)
            scale = float(np.min(ratio)) if np.any(f_nom > 0) else 0.0
            scale = max(scale, 0.0)
            out["friction_scale"] = scale
            out["coulomb_friction"] = total - scale * f_nom
        if "joint_stiffness[0]" in idx:
            k = np.array([th[idx[f"joint_stiffness[{j}]"]] for j in range(n)])
            kr = np.array([th[idx[f"joint_stiffness_rest[{j}]"]] for j in range(n)])
            out["joint_stiffness"] = k
            out["joint_rest"] = kr / np.where(np.abs(k) > 1e-9, k, 1e-9)
        for name in plant.link_names:
            key = f"link_mass_delta[{name}]"
            if key in idx:
                out.setdefault("link_mass_scale", {})[name] = 1.0 + th[idx[key]]
        return out

    values = conv(theta)
    bs = [conv(b) for b in boots]
    ses, kept = {}, []
    final = {}
    for k, v in values.items():
        if isinstance(v, dict):
            arr = np.asarray([[b[k][name] for name in v] for b in bs])
            se = _robust_se(arr) if len(arr) > 1 else np.zeros(len(v))
            ses[k] = {name: float(se[i]) for i, name in enumerate(v)}
            keep = {name: float(val) for i, (name, val) in enumerate(v.items())
                    if abs(val - 1.0) > significance * se[i] and val > 0}
            if keep:
                kept.append(k)
                final[k] = keep
            continue
        arr = np.asarray([b[k] for b in bs], dtype=float)
        se = _robust_se(arr) if len(arr) > 1 else np.zeros_like(np.asarray(v, dtype=float))
        if np.ndim(v) == 0:
            ses[k] = float(se)
            final[k] = float(v)
            continue
        ses[k] = {joints[i]: float(se[i]) for i in range(n)}
        if k == "joint_rest":
            continue
        base = values[k]
        keep = {joints[i]: float(base[i]) for i in range(n) if base[i] > significance * se[i]}
        if keep:
            kept.append(k)
            final[k] = keep
            if k == "joint_stiffness":
                final["joint_rest"] = {name: float(values["joint_rest"][joints.index(name)]) for name in keep}
    return final, ses, kept


def _clip_params(values: dict) -> PlantParams:
    """PlantParams from fitted values, each scalar clipped into its valid range (>= 0; gain > 0)."""
    out = {}
    for k, v in values.items():
        out[k] = v if isinstance(v, dict) else max(float(v), 1e-3 if k == "actuator_gain" else 0.0)
    try:
        return PlantParams(**out)
    except (TypeError, ValueError) as exc:
        raise IdentificationError(f"identify: the fitted values {out} are not a valid plant: {exc}") from exc
