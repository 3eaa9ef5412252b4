"""Derive the FER's nominal gains and check its robot.yaml against the description (MuJoCo only).

Usage, from the repository root:

    python robots/fer/derive.py

Prints, from fer.urdf compiled by MuJoCo and the ranges in robot.yaml:
* the masses (total and moving) and the gravity torques at ``home``;
* per joint, the smallest effective inertia 1/(M^-1)_ii over ``home`` and 5000 seeded samples of the
  workspace box (the inertia a joint sees with the other joints free);
* the Coulomb friction over kp (the base controller's static error band) and kp e_max / effort;
* the gains of the rule ``kp = min(m_eff (2 pi f)^2, 0.5 effort / e_max)``, ``kd = 2 zeta sqrt(kp m_eff)``
  with f = 8 Hz, e_max = 0.05 rad, zeta = 1, rounded to 3 significant digits, and whether robot.yaml
  holds them;
* the fastest closed-loop mode of those gains over the workspace, sqrt(max eig(M^-1 Kp)), and
  max eig(M^-1 Kd) times the 2 ms control period;
* the smallest singular value of the TCP Jacobian (home and workspace), the lowest wrist point, and the
  workspace's margin to the position limits;
* per joint, the largest static torque correction a residual would need on the plant shifted to
  payload_mass (at payload_link), actuator_gain and friction_scale (defaults: 1.5 kg, 0.85, 2):
  |g_true / gain - g_nominal| + friction (scale / gain - 1), against robot.yaml's residual_limit.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import mujoco
import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
F_HZ, E_MAX, ZETA = 8.0, 0.05, 1.0
SAMPLES, SEED = 5000, 0
TCP_LINK = "fer_hand_tcp"
WRIST_LINKS = ("fer_link5", "fer_link6", "fer_link7", "fer_hand", TCP_LINK)


def compile_model(cfg: dict, payload: float = 0.0) -> mujoco.MjModel:
    """Return fer.urdf compiled, with a point payload of ``payload`` kg at the payload link's origin."""
    spec = mujoco.MjSpec.from_file(str(HERE / cfg["description"]))
    body = spec.body(cfg["payload_link"]).add_body(name="payload")
    body.mass, body.inertia, body.explicitinertial = payload, [1e-9] * 3, True
    return spec.compile()


def gravity(m: mujoco.MjModel, d: mujoco.MjData, q: np.ndarray) -> np.ndarray:
    """Return the gravity torques of ``m`` at ``q`` (rigid body only: damping and friction excluded)."""
    out = np.zeros(m.nv)
    d.qpos[:], d.qvel[:] = q, 0.0
    mujoco.mj_kinematics(m, d)
    mujoco.mj_comPos(m, d)
    mujoco.mj_comVel(m, d)
    mujoco.mj_rne(m, d, 0, out)
    return out


def mass_matrix(m: mujoco.MjModel, d: mujoco.MjData, q: np.ndarray) -> np.ndarray:
    d.qpos[:] = q
    mujoco.mj_forward(m, d)
    out = np.zeros((m.nv, m.nv))
    mujoco.mj_fullM(m, d, out)
    return out


def sig3(x: np.ndarray) -> list[float]:
    return [float(f"{v:.3g}") for v in x]


def main(argv=None) -> None:
    """Print the derivation (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--payload", type=float, default=1.5)
    p.add_argument("--gain", type=float, default=0.85)
    p.add_argument("--friction-scale", type=float, default=2.0)
    a = p.parse_args(argv)
    cfg = yaml.safe_load((HERE / "robot.yaml").read_text())
    m = compile_model(cfg)
    d = mujoco.MjData(m)
    names = [m.joint(i).name for i in range(m.njnt)]
    if names != cfg["joints"]:
        raise SystemExit(f"joints: expected the description's {names}, found {cfg['joints']}")
    effort = np.array(cfg["limits"]["effort"], float)
    home = np.array(cfg["home"], float)
    lo, hi = np.array(cfg["workspace"]["lower"], float), np.array(cfg["workspace"]["upper"], float)
    qs = [home] + list(np.random.default_rng(SEED).uniform(lo, hi, (SAMPLES, m.nv)))
    np.set_printoptions(precision=4, suppress=True, linewidth=150)

    root = m.body_parentid[m.jnt_bodyid[0]]
    print(f"total mass {m.body_mass.sum():.4f} kg, moving {m.body_subtreemass[m.jnt_bodyid[0]]:.4f} kg"
          f" (fixed base body '{m.body(root).name}' {m.body_mass[root]:.4f} kg)")
    g_home = gravity(m, d, home)
    print("gravity at home (N m)", g_home, " |g|/effort", np.abs(g_home) / effort)

    m_eff, m_eff_max = np.full(m.nv, np.inf), np.zeros(m.nv)
    for q in qs:
        me = 1.0 / np.diag(np.linalg.inv(mass_matrix(m, d, q)))
        m_eff, m_eff_max = np.minimum(m_eff, me), np.maximum(m_eff_max, me)
    print("effective inertia 1/(M^-1)_ii (kg m^2) at home", 1.0 / np.diag(np.linalg.inv(mass_matrix(m, d, home))))
    print("  min over the workspace", m_eff)
    print("  max over the workspace", m_eff_max)
    w = 2 * math.pi * F_HZ
    kp = np.array(sig3(np.minimum(m_eff * w ** 2, 0.5 * effort / E_MAX)))
    kd = np.array(sig3(2 * ZETA * np.sqrt(kp * m_eff)))
    print(f"rule f={F_HZ} Hz e_max={E_MAX} rad zeta={ZETA}: kp {kp.tolist()} kd {kd.tolist()}")
    same = np.allclose(kp, cfg["gains"]["kp"]) and np.allclose(kd, cfg["gains"]["kd"])
    print("robot.yaml gains", "match the rule" if same else
          f"DIFFER: kp {cfg['gains']['kp']} kd {cfg['gains']['kd']}")
    print("kp x e_max / effort", kp * E_MAX / effort)
    print("Coulomb friction / kp: the static error band of PD + gravity (rad)", m.dof_frictionloss / kp)
    wmax = kdmax = 0.0
    for q in qs:
        mi = np.linalg.inv(mass_matrix(m, d, q))
        wmax = max(wmax, math.sqrt(max(np.linalg.eigvals(mi @ np.diag(kp)).real)))
        kdmax = max(kdmax, max(np.linalg.eigvals(mi @ np.diag(kd)).real))
    print(f"fastest mode over the workspace {wmax / (2 * math.pi):.2f} Hz;"
          f" max eig(M^-1 Kd) x 0.002 s = {kdmax * 0.002:.3f}")

    jac = np.zeros((6, m.nv))
    tcp = m.body(TCP_LINK).id

    def geometry(q):
        mass_matrix(m, d, q)
        mujoco.mj_jacBody(m, d, jac[:3], jac[3:], tcp)
        low = min(d.body(b).xpos[2] for b in WRIST_LINKS)
        return np.linalg.svd(jac, compute_uv=False)[-1], low

    sv_home, _ = geometry(home)
    sv_min, z_min = map(min, zip(*(geometry(q) for q in qs)))
    print(f"smallest singular value of the {TCP_LINK} Jacobian: {sv_home:.3f} at home, {sv_min:.3f} over the"
          f" workspace; lowest wrist/hand origin over the workspace {z_min:.3f} m above the base")
    margin = np.minimum(lo - cfg["limits"]["position_lower"], np.array(cfg["limits"]["position_upper"]) - hi)
    print("workspace margin to the position limits (rad)", margin)

    shifted = compile_model(cfg, a.payload)
    ds = mujoco.MjData(shifted)
    friction = m.dof_frictionloss
    need = np.zeros(m.nv)
    for q in qs:
        corr = np.abs(gravity(shifted, ds, q) / a.gain - gravity(m, d, q)) + friction * (a.friction_scale / a.gain - 1)
        need = np.maximum(need, corr)
    limit = np.array(cfg["residual_limit"], float)
    print(f"largest static correction, payload {a.payload} kg, gain {a.gain}, friction x{a.friction_scale} (N m)",
          need)
    print("residual_limit (N m)", limit, " covered:", (need <= limit).tolist())


if __name__ == "__main__":
    main()
