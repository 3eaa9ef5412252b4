"""Write a robot folder from a description: ``residual-control robot init`` and ``robot params``.

``init`` compiles the description (``compile_robot``: the errors a user sees are its errors) and derives
robot.yaml's values from it:

* ``limits``: position and effort from the compiled model (the URDF's ``<limit>``, an MJCF's joint
  range and motor ctrlrange/forcerange); velocity from the URDF's ``<limit velocity>``. An MJCF has no
  velocity limit (nor has a URDF joint without one): :data:`DEFAULT_VELOCITY` (2.0 rad/s, 0.5 m/s for
  a slide joint), said so. A joint without position limits gets +-pi (slide: +-1 m), said so.
* ``home``: ``--home``, or the middle of each joint's range; clipped into the limits less the margin.
* ``workspace``: ``home +- min(0.6, 0.25 range)``, inside the limits less a margin of
  ``min(0.2, 0.1 range)`` (0.2 rad for any arm joint of more than 2 rad of range); or as given.
* ``gains``: robots/fer/derive.py's rule. ``m_eff = min 1/(M^-1)_ii`` over home and 5000 seeded samples
  of the workspace (the inertia a joint sees with the other joints free, at its smallest);
  ``kp = min(m_eff (2 pi 8 Hz)^2, 0.5 effort / 0.05 rad)`` (a 0.05 rad error uses at most half the
  effort), ``kd = 2 sqrt(kp m_eff)`` (critical damping), three significant digits.
* ``residual_limit``: 25 % of the effort limit.
* ``randomization``: the payload from 0 to about 10 % of the moving mass (rounded to 1, 1.5, 2, 2.5, 3
  or 5 times a power of ten), the other effects the package's default ranges (:data:`RANDOMIZATION`).

Then the files the demo and the nodes need (``write_robot_files``, also ``robot params DIR`` on an
existing robot.yaml): ``params.yaml`` (the ROS params file's ``/**`` section: the robot's values only),
``reference.yaml`` (a ``reference_publisher`` sinusoid per joint in the workspace) and
``plants/shifted.yaml`` (a plant inside the randomization ranges, far from nominal).
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .folder import ROBOT_FILE, RobotFolderError, RobotSpec, load_robot

#: The gain rule of robots/fer/derive.py: bandwidth, error that may use half the effort, damping ratio.
F_HZ, E_MAX, ZETA = 8.0, 0.05, 1.0
#: Workspace samples (and their seed) of the effective-inertia minimum.
SAMPLES, SEED = 5000, 0
#: Velocity limit where the description has none (rad/s for a hinge, m/s for a slide joint).
DEFAULT_VELOCITY = {"hinge": 2.0, "slide": 0.5}
#: Position limits of a joint the description leaves unlimited (rad for a hinge, m for a slide joint).
DEFAULT_RANGE = {"hinge": math.pi, "slide": 1.0}
#: Workspace: half-width min(WS_HALF, WS_SHARE x range) around home, margin min(MARGIN, MARGIN_SHARE x range).
WS_HALF, WS_SHARE, MARGIN, MARGIN_SHARE = 0.6, 0.25, 0.2, 0.1
RESIDUAL_SHARE = 0.25          # residual_limit / effort
RESIDUAL_MAX_FACTOR = 1.5      # residual_limit_max / residual_limit (capped at the effort)
INTEGRAL_SHARE = 0.1           # integral_limit / effort (pid's anti-windup clamp)
SPREAD_WARN = 5.0              # m_eff max / min over the workspace that init points out
PAYLOAD_SHARE = 0.1            # randomization.payload_mass top / moving mass
#: Randomization ranges of every robot but the payload (those of the built-in arm).
RANDOMIZATION = {
    "friction_scale": (0.5, 2.0),
    "damping_scale": (0.5, 2.0),
    "actuator_gain": (0.8, 1.2),
    "actuator_latency": (0.0, 0.004),
    "sensor_noise_std": (0.0, 0.001),
}
#: The demo's shifted plant, inside the randomization ranges (payload: this share of the range's top).
SHIFTED = {"payload_share": 0.75, "friction_scale": 1.5, "damping_scale": 1.5, "actuator_gain": 0.85,
           "actuator_latency": 0.002, "sensor_noise_std": 0.0005}
#: The demo's reference: sinusoids around the workspace middle, this share of its half-width, these frequencies.
REFERENCE_AMPLITUDE_SHARE = 0.4
REFERENCE_HZ = (0.3, 0.5)
PARAMS_FILE, REFERENCE_FILE, PLANT_FILE = "params.yaml", "reference.yaml", "plants/shifted.yaml"


class InitError(ValueError):
    """A robot folder that cannot be written, with what was expected and what was found."""


@dataclass
class Derived:
    """What ``init`` derived: robot.yaml's values, how each was found, what the user must still check."""

    robot: dict
    notes: List[str] = field(default_factory=list)
    to_check: List[str] = field(default_factory=list)
    m_eff: Optional[np.ndarray] = None
    moving_mass: float = 0.0


# ----------------------------------------------------------------------------------- formatting
def num(value: float, digits: int = 6) -> str:
    """Return ``value`` as a YAML float with a decimal point (``87.0``, ``0.0005``: never ``87`` or ``5e-04``).

    ROS 2 reads ``87`` as an integer: a double or double-array parameter refuses it.
    """
    v = float(f"{float(value):.{digits}g}")
    if v == 0.0:
        return "0.0"
    return np.format_float_positional(v, trim="0")


def nums(values, digits: int = 6) -> str:
    """Return a YAML flow list of floats (see :func:`num`)."""
    return "[" + ", ".join(num(v, digits) for v in values) + "]"


def num_within(value: float, toward: int, digits: int = 6) -> str:
    """Return :func:`num` of ``value`` rounded toward ``+inf`` (``toward`` > 0) or ``-inf`` (``toward`` < 0).

    A limit read back from the file must lie inside the description's: a URDF's 6.28318530718 is written
    6.28318 as an upper limit (not 6.28319, outside it) and -6.28318 as a lower one.
    """
    value = float(value)
    rounded = float(f"{value:.{digits}g}")
    if not math.isfinite(value) or value == 0.0 or (rounded - value) * toward >= 0:
        return num(rounded, digits)
    step = 10.0 ** (math.floor(math.log10(abs(value))) - (digits - 1))
    units = math.ceil(value / step) if toward > 0 else math.floor(value / step)
    return num(units * step, digits + 1)


def nums_within(values, toward: int, digits: int = 6) -> str:
    """Return a YAML flow list of :func:`num_within` values."""
    return "[" + ", ".join(num_within(v, toward, digits) for v in values) + "]"


def text(value: str) -> str:
    """Return a string as a YAML scalar (quoted where plain YAML would read it otherwise)."""
    import yaml

    return yaml.safe_dump([str(value)], default_flow_style=True, width=10 ** 6).strip()[1:-1]


def names(values: Sequence[str]) -> str:
    return "[" + ", ".join(text(v) for v in values) + "]"


def sig3(x) -> np.ndarray:
    return np.array([float(f"{v:.3g}") for v in np.asarray(x, dtype=float)])


def nice_round(x: float) -> float:
    """Round ``x`` > 0 to the nearest of 1, 1.5, 2, 2.5, 3, 5 (and 10) times a power of ten."""
    if not x > 0:
        return 0.0
    scale = 10.0 ** math.floor(math.log10(x))
    steps = np.array([1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 10.0])
    return float(f"{scale * steps[np.argmin(np.abs(steps * scale - x))]:.6g}")


# ----------------------------------------------------------------------------------- derivation
def _joint_kind(model, jid: int) -> str:
    import mujoco

    return "slide" if model.jnt_type[jid] == mujoco.mjtJoint.mjJNT_SLIDE else "hinge"


def derive_gains(compiled, home: np.ndarray, lower: np.ndarray, upper: np.ndarray, effort: np.ndarray,
                 payload_mass: float = 0.0, samples: int = SAMPLES, seed: int = SEED
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (kp, kd, m_eff min, m_eff max): robots/fer/derive.py's rule over home and ``samples`` workspace poses."""
    from .dynamics import MujocoDynamics

    dyn = MujocoDynamics(compiled, payload_mass=payload_mass)
    qs = [np.asarray(home, float)] + list(np.random.default_rng(seed).uniform(lower, upper, (samples, dyn.dof)))
    m_eff, m_eff_max = np.full(dyn.dof, np.inf), np.zeros(dyn.dof)
    for q in qs:
        me = 1.0 / np.diag(np.linalg.inv(dyn.mass_matrix(q)))
        m_eff, m_eff_max = np.minimum(m_eff, me), np.maximum(m_eff_max, me)
    w = 2 * math.pi * F_HZ
    kp = sig3(np.minimum(m_eff * w ** 2, 0.5 * np.asarray(effort, float) / E_MAX))
    kd = sig3(2 * ZETA * np.sqrt(kp * m_eff))
    return kp, kd, m_eff, m_eff_max


def jacobian_margin(compiled, body: str, home: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                    samples: int = SAMPLES, seed: int = SEED) -> Tuple[float, float]:
    """Return the smallest singular value of ``body``'s 6 x n Jacobian at home and over the workspace samples.

    Near 0: a singular pose (e.g. two joint axes aligned), where decentralized gains lose their margin.
    """
    import mujoco

    m = compiled.model
    d = mujoco.MjData(m)
    bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, body)
    jac = np.zeros((6, m.nv))
    qpos, dof = np.asarray(compiled.qpos_ids), np.asarray(compiled.dof_ids)

    def sigma(q):
        d.qpos[qpos] = q
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_jacBody(m, d, jac[:3], jac[3:], bid)
        return float(np.linalg.svd(jac[:, dof], compute_uv=False)[-1])

    qs = np.random.default_rng(seed).uniform(lower, upper, (samples, compiled.dof))
    return sigma(np.asarray(home, float)), min(sigma(q) for q in qs)


def home_and_workspace(lower: np.ndarray, upper: np.ndarray, home: Optional[Sequence[float]] = None
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[int]]:
    """Return (home, workspace lower, workspace upper, joints whose given home was clipped) (module docstring)."""
    rng = upper - lower
    margin = np.minimum(MARGIN, MARGIN_SHARE * rng)
    lo_ok, hi_ok = lower + margin, upper - margin
    h = np.round((lower + upper) / 2 if home is None else np.asarray(home, float), 4)
    clipped = [i for i in range(len(h)) if not lo_ok[i] <= h[i] <= hi_ok[i]]
    h = np.clip(h, lo_ok, hi_ok)
    half = np.minimum(WS_HALF, WS_SHARE * rng)
    wl = np.round(np.maximum(h - half, lo_ok), 4)
    wu = np.round(np.minimum(h + half, hi_ok), 4)
    # Rounding never leaves the limits (the margin is far larger than 5e-5) but may cross home.
    return np.clip(h, wl, wu), wl, wu, clipped


def derive_robot(description: Path, out: Path, joints: Optional[Sequence[str]] = None,
                 package_paths: Sequence[Path] = (), payload_link: Optional[str] = None,
                 name: Optional[str] = None, home: Optional[Sequence[float]] = None,
                 workspace: Optional[Tuple[Sequence[float], Sequence[float]]] = None,
                 description_ref: Optional[str] = None) -> Derived:
    """Compile ``description`` and derive robot.yaml's values (module docstring).

    Raises :class:`residual_control.robot.description.DescriptionError` as ``compile_robot`` does, and
    :class:`InitError` for a bad ``home``.
    """
    import mujoco

    from .description import compile_robot, urdf_joint_limits

    description = Path(description)
    compiled = compile_robot(description, joints=joints, payload_link=payload_link, package_paths=package_paths)
    model = compiled.model
    n = compiled.dof
    jn = list(compiled.joint_names)
    notes = [f"compiled {description} ({compiled.kind}): joints {jn}"] + [f"compiler: {x}" for x in compiled.notes]
    to_check: List[str] = []
    kinds = [_joint_kind(model, int(j)) for j in compiled.joint_ids]

    if payload_link is None:
        payload_link = default_payload_link(compiled)
        if payload_link != compiled.payload_link:
            compiled = compile_robot(description, joints=jn, payload_link=payload_link, package_paths=package_paths)
            model = compiled.model
        notes.append(f"payload_link {payload_link!r}: the end of the rigid chain after the last joint "
                     "(--payload-link to choose another)")
        to_check.append(f"payload_link {payload_link!r} is where a payload is held (the tool flange or the hand)")

    lower, upper = (np.array(x, float) for x in compiled.position_limits)
    unlimited = [jn[i] for i in range(n) if not (math.isfinite(lower[i]) and math.isfinite(upper[i]))]
    for i in range(n):
        if jn[i] in unlimited:
            r = DEFAULT_RANGE[kinds[i]]
            lower[i] = lower[i] if math.isfinite(lower[i]) else -r
            upper[i] = upper[i] if math.isfinite(upper[i]) else r
    if unlimited:
        notes.append(f"joints without position limits {unlimited}: given +-{DEFAULT_RANGE['hinge']:.4f} rad "
                     f"(slide: +-{DEFAULT_RANGE['slide']} m)")
        to_check.append(f"position limits of the unlimited joints {unlimited} (robot.yaml limits)")
    effort = np.array(compiled.effort_limits, float)

    velocity = np.array([DEFAULT_VELOCITY[k] for k in kinds])
    defaulted = list(jn)
    if compiled.kind == "urdf":
        table = urdf_joint_limits(description)
        defaulted = []
        for i, j in enumerate(jn):
            v = table.get(j, {}).get("velocity", math.nan)
            if math.isfinite(v) and v > 0:
                velocity[i] = v
            else:
                defaulted.append(j)
        notes.append("limits: position, velocity and effort from the URDF's <limit> tags")
    else:
        notes.append("limits: position from the MJCF's joint ranges, effort from its motors / actuatorfrcrange")
    if defaulted:
        why = "an MJCF has no velocity limit" if compiled.kind == "mjcf" else "no <limit velocity> in the URDF"
        notes.append(f"velocity limits of {defaulted}: {why}; set to {DEFAULT_VELOCITY['hinge']} rad/s "
                     f"({DEFAULT_VELOCITY['slide']} m/s for slide joints)")
        to_check.append(f"velocity limits of {defaulted} (defaulted: {why}): take them from the manufacturer's data")

    if home is not None and len(home) != n:
        raise InitError(f"--home: expected {n} values (one per joint {jn}), found {len(home)}")
    h, wl, wu, clipped = home_and_workspace(lower, upper, home)
    if workspace is not None:
        wl, wu = (np.asarray(w, float) for w in workspace)
        if wl.shape != (n,) or wu.shape != (n,):
            raise InitError(f"--workspace-lower/--workspace-upper: expected {n} values each (one per joint {jn}), "
                            f"found {wl.size} and {wu.size}")
        bad = [jn[i] for i in range(n) if not lower[i] <= wl[i] <= h[i] <= wu[i] <= upper[i]]
        if bad:
            raise InitError(f"--workspace-lower/--workspace-upper: expected position_lower <= lower <= home <= upper "
                            f"<= position_upper per joint, found not so for {bad} (home {h.tolist()})")
        notes.append("workspace: as given")
    if home is None:
        notes.append("home: the middle of each joint's range")
    if clipped:
        notes.append(f"home: clipped into the limits less the margin for {[jn[i] for i in clipped]}")
    link = payload_link or compiled.payload_link
    s_home, s_min = jacobian_margin(compiled, link, h, wl, wu)
    notes.append(f"smallest singular value of the {link!r} Jacobian: {s_home:.3g} at home, {s_min:.3g} over the "
                 "workspace (near 0: a singular pose, where the gains below get small)")
    to_check.append("home pose is neither singular nor self-colliding (the simulator has no contacts), and the "
                    "workspace box around it is free of the table, the robot itself and singular poses "
                    f"(Jacobian singular value {s_min:.3g} at its smallest); --home moves it")

    payload_mass = 0.0
    kp, kd, m_eff, m_eff_max = derive_gains(compiled, h, wl, wu, effort, payload_mass)
    notes.append(f"gains: kp = min(m_eff (2 pi {F_HZ:g} Hz)^2, 0.5 effort / {E_MAX} rad), kd = 2 sqrt(kp m_eff), "
                 f"m_eff the smallest 1/(M^-1)_ii over home and {SAMPLES} workspace samples")
    spread = m_eff_max / m_eff
    wide = [f"{jn[i]} x{spread[i]:.0f}" for i in range(n) if spread[i] > SPREAD_WARN]
    if wide:
        notes.append(f"effective inertia varies over the workspace by {', '.join(wide)}: the gains of those joints "
                     "are set by the lightest poses (near a singularity: a smaller workspace or another home "
                     "gives stiffer gains)")
    to_check.append("gains on the real arm (derived from the description's inertias: rotor inertia, if missing "
                    "from the description, makes the wrist look lighter than it is)")

    first = min(int(model.jnt_bodyid[j]) for j in compiled.joint_ids)
    moving = float(max(model.body_subtreemass[int(model.jnt_bodyid[j])] for j in compiled.joint_ids))
    payload_top = nice_round(PAYLOAD_SHARE * moving)
    notes.append(f"moving mass {moving:.4g} kg (from body {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, first)!r}"
                 f" out): randomization.payload_mass [0, {payload_top:g}] kg")
    damping, friction = np.asarray(compiled.damping), np.asarray(compiled.frictionloss)
    notes.append(f"description's viscous damping {damping.tolist()} N m s/rad, Coulomb friction "
                 f"{friction.tolist()} N m (the plant's nominal values, scaled by the randomization)")
    to_check.append("friction and damping values of the description: the simulated plant has exactly these "
                    + ("(all zero: a real arm has some)" if not np.any(friction) and not np.any(damping) else
                       "(a description's are often placeholders)"))

    rel_desc = description_ref if description_ref is not None else _relative(description, out)
    robot = {
        "name": name or out.resolve().name,
        "description": rel_desc,
        "package_paths": [_relative(Path(p), out) for p in package_paths],
        "joints": jn,
        "payload_link": payload_link or compiled.payload_link,
        "payload_mass": payload_mass,
        "limits": {"position_lower": lower, "position_upper": upper, "velocity": velocity, "effort": effort},
        "home": h,
        "workspace": {"lower": wl, "upper": wu},
        "gains": {"kp": kp, "kd": kd},
        "residual_limit": RESIDUAL_SHARE * effort,
        "randomization": {"payload_mass": (0.0, payload_top), **RANDOMIZATION},
    }
    return Derived(robot=robot, notes=notes, to_check=to_check, m_eff=m_eff, moving_mass=moving)


def default_payload_link(compiled) -> str:
    """Return the body at the end of the unbranched rigid chain after the last used joint (e.g. a hand).

    From the body of the last joint, follow child bodies without joints while there is exactly one
    (the package's payload body left out); a hand with fingers (a branch) stops there.
    """
    m = compiled.model
    children: Dict[int, List[int]] = {}
    for b in range(1, m.nbody):
        if b != compiled.payload_body_id:
            children.setdefault(int(m.body_parentid[b]), []).append(b)
    body = int(m.jnt_bodyid[compiled.joint_ids[-1]])
    while True:
        kids = children.get(body, [])
        if len(kids) != 1 or m.body_jntnum[kids[0]] != 0:
            break
        body = kids[0]
    import mujoco

    return mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, body)


def _relative(path: Path, out: Path) -> str:
    """Return ``path`` relative to ``out`` where they share a folder below the root, else absolute."""
    path, out = Path(path).resolve(), out.resolve()
    try:
        if Path(os.path.commonpath([path, out])) != Path(path.anchor):
            return os.path.relpath(path, out)
    except ValueError:  # another drive
        pass
    return str(path)


# ----------------------------------------------------------------------------------- writers
def robot_yaml_text(robot: dict, header: str = "") -> str:
    """Return robot.yaml's text for a derived robot (:attr:`Derived.robot`)."""
    lim, ws, g, rnd = robot["limits"], robot["workspace"], robot["gains"], robot["randomization"]
    lines = [f"# {line}" if line else "#" for line in header.splitlines()] + [
        f"name: {text(robot['name'])}",
        f"description: {text(robot['description'])}   # relative to this folder",
        f"package_paths: {names(robot['package_paths'])}",
        f"joints: {names(robot['joints'])}",
        "command_interface: effort",
        f"payload_link: {text(robot['payload_link'])}   # the body the payload is attached to",
        f"payload_mass: {num(robot['payload_mass'])}   # kg: the payload the nominal model assumes",
        "limits:                        # rad, rad/s, N m (m, m/s, N for slide joints)",
        f"  position_lower: {nums_within(lim['position_lower'], +1)}",
        f"  position_upper: {nums_within(lim['position_upper'], -1)}",
        f"  velocity: {nums_within(lim['velocity'], -1)}",
        f"  effort: {nums_within(lim['effort'], -1)}",
        f"home: {nums(robot['home'])}   # the start pose",
        "workspace:                     # the box the reference trajectories stay in",
        f"  lower: {nums(ws['lower'])}",
        f"  upper: {nums(ws['upper'])}",
        "gains:                         # nominal base-controller gains (pd_gravity / computed_torque)",
        f"  kp: {nums(g['kp'], 3)}",
        f"  kd: {nums(g['kd'], 3)}",
        f"residual_limit: {nums(robot['residual_limit'])}   # the clamp of the residual (25 % of effort)",
        "randomization:                 # uniform training ranges of the reality gap",
    ] + [f"  {k}: {nums(v)}" for k, v in rnd.items()]
    for key in ("params", "reference", "plant", "model"):
        if robot.get(key):
            lines.append(f"{key}: {text(robot[key])}")
    return "\n".join(lines) + "\n"


def robot_ref(spec: RobotSpec) -> str:
    """Return the params file's ``robot`` value of a folder: a shipped robot's name, else its absolute path."""
    from residual_control.paths import share_path

    try:
        if share_path("robots", spec.root.name).resolve() == spec.root.resolve():
            return spec.root.name
    except FileNotFoundError:
        pass
    return str(spec.root.resolve())


def params_yaml_text(spec: RobotSpec) -> str:
    """Return the ROS 2 params file of a robot: the ``/**`` section with its values only (module docstring)."""
    effort = spec.limits.effort
    rl = spec.residual_limit
    rl_max = np.minimum(effort, RESIDUAL_MAX_FACTOR * rl)
    return "\n".join([
        f"# ROS 2 params file of the robot {spec.name}: written by `residual-control robot params` from its",
        "# robot.yaml (limits.effort, gains, residual_limit, payload_mass). `/**` holds the robot's values only;",
        "# set a generic parameter under a node's name (config/residual_control.yaml says how).",
        "# Units: torques in N m, angles in rad, times in s.",
        "/**:",
        "  ros__parameters:",
        f"    joints: {names(spec.joints)}",
        f"    command_min: {nums(-effort)}",
        f"    command_max: {nums(effort)}",
        f"    residual_limit: {nums(rl)}        # N m, the mixer's clamp",
        f"    residual_limit_max: {nums(rl_max)}    # N m, its read-only ceiling",
        f"    kp: {nums(spec.kp)}",
        f"    ki: {nums(np.zeros(spec.dof))}",
        f"    kd: {nums(spec.kd)}",
        f"    integral_limit: {nums(INTEGRAL_SHARE * effort)}",
        f"    damp_kd: {nums(spec.kd)}",
        f"    robot: {text(robot_ref(spec))}",
        "    model:",
        f"      payload_mass: {num(spec.payload_mass)}   # kg at {spec.payload_link}",
    ]) + "\n"


def reference_values(spec: RobotSpec) -> dict:
    """Return the demo's sinusoids: centre, amplitude, frequency and phase per joint (module docstring)."""
    lo, hi = spec.workspace_lower, spec.workspace_upper
    n = spec.dof
    center = np.round((lo + hi) / 2, 4)
    amplitude = np.round(REFERENCE_AMPLITUDE_SHARE * (hi - lo) / 2, 4)
    freq = np.linspace(REFERENCE_HZ[0], REFERENCE_HZ[1], n) if n > 1 else np.array([REFERENCE_HZ[0]])
    # The peak velocity 2 pi f A stays within half the velocity limit.
    cap = 0.5 * spec.limits.velocity / (2 * math.pi * np.maximum(amplitude, 1e-9))
    freq = np.round(np.minimum(freq, cap), 3)
    phase = np.round(np.arange(n) * 2 * math.pi / n, 4)
    return {"center": center, "amplitude": amplitude, "frequency_hz": freq, "phase": phase}


def reference_yaml_text(spec: RobotSpec) -> str:
    r = reference_values(spec)
    return "\n".join([
        f"# ROS 2 params file of the reference publisher (residual_control/sim/reference_node.py) for {spec.name}:",
        "# a sinusoid per joint around the workspace middle, 40 % of its half-width, 0.3 to 0.5 Hz, phases",
        "# spread. Written by `residual-control robot params`. Angles in rad.",
        "reference_publisher:",
        "  ros__parameters:",
        f"    joints: {names(spec.joints)}",
        "    rate_hz: 100.0",
        "    trajectory_type: sinusoid        # q = center + amplitude * sin(2 pi frequency_hz t + phase)",
        f"    center: {nums(r['center'])}",
        f"    amplitude: {nums(r['amplitude'])}",
        f"    frequency_hz: {nums(r['frequency_hz'])}",
        f"    phase: {nums(r['phase'])}",
    ]) + "\n"


def shifted_plant(spec: RobotSpec) -> dict:
    """Return the demo's shifted plant (``PlantParams`` keys): :data:`SHIFTED`, inside the randomization ranges."""
    rnd = spec.randomization
    values = {"payload_mass": SHIFTED["payload_share"] * rnd["payload_mass"][1]}
    values.update({k: SHIFTED[k] for k in ("friction_scale", "damping_scale", "actuator_gain", "actuator_latency",
                                           "sensor_noise_std")})
    return {k: float(np.clip(v, *rnd[k])) for k, v in values.items()}


def plant_yaml_text(spec: RobotSpec) -> str:
    p = shifted_plant(spec)
    return "\n".join([
        f"# The demo's shifted plant of {spec.name} (a PlantParams file): inside robot.yaml's randomization",
        "# ranges, far from nominal. Written by `residual-control robot params`.",
    ] + [f"{k}: {num(v)}" for k, v in p.items()]) + "\n"


def write_robot_files(spec: RobotSpec, force: bool = False) -> List[Path]:
    """Write params.yaml, reference.yaml and plants/shifted.yaml of a robot folder; point robot.yaml at them.

    A file that exists is kept unless ``force``. robot.yaml gets a ``params:``/``reference:``/``plant:``
    line appended where it has none (its comments kept); one that names another file is left as it is
    and said so (:class:`InitError` lists them after the files are written).
    """
    root = spec.root
    files = {"params": (PARAMS_FILE, params_yaml_text), "reference": (REFERENCE_FILE, reference_yaml_text),
             "plant": (PLANT_FILE, plant_yaml_text)}
    existing = [rel for rel, _ in files.values() if (root / rel).exists()]
    if existing and not force:
        raise InitError(f"{root}: expected no {', '.join(existing)} (or --force to rewrite), found them")
    written = []
    for key, (rel, make) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make(spec), encoding="utf-8")
        written.append(path)
    robot_file = root / ROBOT_FILE
    content = robot_file.read_text(encoding="utf-8")
    conflicts = []
    added = []
    for key, (rel, _) in files.items():
        current = spec.raw.get(key)
        if current is None or current == "":
            added.append(f"{key}: {rel}")
        elif (root / str(current)).resolve() != (root / rel).resolve():
            conflicts.append(f"{key}: {current}")
    if added:
        sep = "" if content.endswith("\n") else "\n"
        robot_file.write_text(content + sep + "\n".join(added) + "\n", encoding="utf-8")
    if conflicts:
        raise InitError(f"{robot_file}: expected {', '.join(f'{k}: {files[k][0]}' for k in files)} to use the "
                        f"files written, found {conflicts}; the files are written, robot.yaml is left as it is")
    return written


# ----------------------------------------------------------------------------------- commands
def init_folder(description: Path, out: Path, joints: Optional[Sequence[str]] = None,
                package_paths: Sequence[Path] = (), payload_link: Optional[str] = None,
                name: Optional[str] = None, home: Optional[Sequence[float]] = None,
                workspace: Optional[Tuple[Sequence[float], Sequence[float]]] = None, copy: bool = False,
                force: bool = False) -> Tuple[RobotSpec, Derived, List[Path]]:
    """Write a robot folder at ``out`` from ``description`` (``robot init``); return its spec, derivation, files."""
    description, out = Path(description).expanduser(), Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InitError(f"--out {out}: expected a folder (new or empty), found a file")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InitError(f"--out {out}: expected a new or empty folder (or --force), found "
                        f"{len(list(out.iterdir()))} entries in it")
    if not description.is_file():
        raise InitError(f"description {description}: expected a URDF or MJCF file, found no such file")
    ref = None
    if copy:
        ref = description.name
    derived = derive_robot(description, out, joints=joints, package_paths=package_paths, payload_link=payload_link,
                           name=name, home=home, workspace=workspace, description_ref=ref)
    out.mkdir(parents=True, exist_ok=True)
    if copy and description.resolve() != (out / description.name).resolve():
        from .description import DescriptionError, compile_robot

        target = out / description.name
        shutil.copy2(description, target)
        try:  # its relative mesh paths now start from the folder
            compile_robot(target, joints=derived.robot["joints"], payload_link=derived.robot["payload_link"],
                          package_paths=package_paths)
        except DescriptionError as exc:
            target.unlink()
            raise InitError(f"--copy: expected the copied description to compile from {out}, found: {exc}; copy "
                            "its mesh files along or leave out --copy") from None
    header = (f"Robot folder written by `residual-control robot init {description.name}`: every value below is\n"
              "derived from the description (docs/robots.md says how); check them (the command lists what).\n"
              "Schema: residual_control/robot/folder.py.")
    (out / ROBOT_FILE).write_text(robot_yaml_text(derived.robot, header), encoding="utf-8")
    try:
        spec = load_robot(out)
    except RobotFolderError as exc:
        raise InitError(f"the robot.yaml written does not load: {exc}") from None
    written = [out / ROBOT_FILE] + write_robot_files(spec, force=force)
    return load_robot(out), derived, written


def _floats(value: str, what: str) -> List[float]:
    try:
        return [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise InitError(f"{what}: expected comma-separated numbers, found {value!r}") from None


def print_derived(spec: RobotSpec, derived: Derived, written: Sequence[Path]) -> None:
    np.set_printoptions(precision=4, suppress=True, linewidth=140)
    print(f"robot folder {spec.root} ({spec.name}, {spec.dof} joints: {', '.join(spec.joints)})")
    for path in written:
        print(f"  wrote {path}")
    print("derived:")
    for note in derived.notes:
        print(f"  - {note}")
    lim = spec.limits
    rows = [("position_lower", lim.position_lower), ("position_upper", lim.position_upper),
            ("velocity", lim.velocity), ("effort", lim.effort), ("home", spec.home),
            ("workspace.lower", spec.workspace_lower), ("workspace.upper", spec.workspace_upper),
            ("m_eff (min)", derived.m_eff), ("kp", spec.kp), ("kd", spec.kd), ("residual_limit", spec.residual_limit)]
    width = max(len(r[0]) for r in rows)
    for label, values in rows:
        print(f"  {label:<{width}}  {' '.join(f'{v:9.4g}' for v in values)}")
    print(f"  randomization: {dict((k, list(v)) for k, v in spec.randomization.items())}")
    print("check before use:")
    for item in derived.to_check:
        print(f"  - {item}")
    print(f"then: residual-control robot check {spec.root}")


def run_init(args) -> int:
    """``residual-control robot init``: exit 0, or 2 with the error on stderr."""
    import sys

    from .description import DescriptionError

    try:
        joints = [j.strip() for j in args.joints.split(",") if j.strip()] if args.joints else None
        home = _floats(args.home, "--home") if args.home else None
        workspace = None
        if args.workspace_lower or args.workspace_upper:
            if not (args.workspace_lower and args.workspace_upper):
                raise InitError("--workspace-lower/--workspace-upper: expected both, found one")
            workspace = (_floats(args.workspace_lower, "--workspace-lower"),
                         _floats(args.workspace_upper, "--workspace-upper"))
        spec, derived, written = init_folder(
            Path(args.description), Path(args.out), joints=joints, package_paths=[Path(p) for p in args.package_path],
            payload_link=args.payload_link, name=args.name, home=home, workspace=workspace,
            copy=args.copy, force=args.force)
    except (DescriptionError, InitError, RobotFolderError) as exc:
        print(f"robot init: {exc}", file=sys.stderr)
        return 2
    print_derived(spec, derived, written)
    return 0


def run_params(args) -> int:
    """``residual-control robot params``: (re)write a folder's params, reference and shifted-plant files."""
    import sys

    try:
        spec = load_robot(Path(args.dir))
        written = write_robot_files(spec, force=args.force)
    except (InitError, RobotFolderError) as exc:
        print(f"robot params: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0
