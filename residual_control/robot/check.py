"""Validate a robot folder and its description: ``residual-control robot check DIR``.

One line per check, ``ok (...)`` or ``FAILED: ...`` (what was expected, what was found); a check that
needs the compiled description is ``skipped`` when it does not compile. Exit 0 when every check
passes, 1 otherwise, 2 when robot.yaml cannot be read at all (no file, not YAML, not a mapping).

The checks:

* ``robot.yaml``: it loads (``load_robot``: keys, shapes, limits ordered, home and workspace inside them);
* ``description``: it compiles with exactly the robot's joints (``compile_robot``: each exists, is a
  hinge or slide joint, has a torque motor or an effort limit to size one; meshes resolve);
* ``joints``: the compiled model's joints are robot.yaml's, in order, each driven by one motor;
* ``inertias``: every moving link (a body moved by a joint, with the bodies welded to it) has a mass
  > 0; every body with mass has positive principal moments that satisfy the triangle inequality;
  M(home) is symmetric positive definite;
* ``limits``: robot.yaml's effort <= the description's effort limit, its position limits inside the
  description's (where it has them), its velocity <= the URDF's ``<limit velocity>`` (where given);
* ``payload link``: the link exists and is moved by the joints;
* ``nominal model = simulator``: ``MujocoDynamics`` (robot.yaml's payload_mass) against the MuJoCo
  plant's own model (``MujocoPlant`` with the same payload) at :data:`STATES` seeded states of the
  workspace: gravity against ``qfrc_bias`` at zero velocity, inverse dynamics against ``mj_inverse``
  with passive and constraint forces off, to :data:`TOLERANCE` N m;
* ``params file`` (if robot.yaml names one): the robot's joints in order, a ``robot`` value that
  resolves to this folder, every robot-specific parameter of the three nodes present and valid by the
  schema, and its limits, gains, residual limit and payload those of robot.yaml;
* ``reference`` (if named): a ``reference_publisher`` section for the robot's joints whose trajectory
  stays in the workspace, its peak velocity within the velocity limits;
* ``plant`` (if named): a PlantParams file inside robot.yaml's randomization ranges.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

from .folder import ROBOT_FILE, RobotFolderError, RobotSpec, load_robot, robot_folder

STATES = 50
TOLERANCE = 1e-6
SEED = 0


class CheckFailed(Exception):
    """A check's failure: its message says what was expected and what was found."""


def _fmt(values) -> str:
    return "[" + ", ".join(f"{float(v):.6g}" for v in values) + "]"


# ----------------------------------------------------------------------------------- the checks
def check_joints(spec: RobotSpec, compiled) -> str:
    if tuple(compiled.joint_names) != tuple(spec.joints):
        raise CheckFailed(f"expected the joints {list(spec.joints)}, found {list(compiled.joint_names)}")
    if np.any(np.asarray(compiled.actuator_ids) < 0):
        bad = [spec.joints[i] for i in np.flatnonzero(np.asarray(compiled.actuator_ids) < 0)]
        raise CheckFailed(f"expected a motor on every joint, found none on {bad}")
    added = sum(1 for note in compiled.notes if note.startswith("added torque motor"))
    how = f"{added} motors added from effort limits" if added else "the description's motors"
    return f"{spec.dof} joints, each a hinge/slide driven by one torque motor ({how})"


def _moving_bodies(model, joint_ids) -> np.ndarray:
    """Return the bodies moved by the joints (the subtrees of their bodies)."""
    roots = {int(model.jnt_bodyid[j]) for j in joint_ids}
    moving = []
    for b in range(1, model.nbody):
        a = b
        while a > 0 and a not in roots:
            a = int(model.body_parentid[a])
        if a in roots:
            moving.append(b)
    return np.array(moving, dtype=int)


def check_inertias(spec: RobotSpec, compiled) -> str:
    import mujoco

    m = compiled.model
    name = lambda b: mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, int(b))  # noqa: E731
    moving = [b for b in _moving_bodies(m, compiled.joint_ids) if b != compiled.payload_body_id]
    problems = []
    for j, joint in zip(compiled.joint_ids, spec.joints):
        body = int(m.jnt_bodyid[j])
        group = [b for b in moving if m.body_weldid[b] == m.body_weldid[body]]
        mass = float(np.sum(m.body_mass[group]))
        if not mass > 0:
            problems.append(f"link '{name(body)}' (moved by joint '{joint}'): expected a mass > 0, found {mass:g} kg")
    for b in moving:
        mass, inertia = float(m.body_mass[b]), np.asarray(m.body_inertia[b], float)
        if mass < 0 or not math.isfinite(mass):
            problems.append(f"link '{name(b)}': expected a mass >= 0, found {mass}")
        if mass > 0:
            a, bb, c = inertia
            if np.any(inertia <= 0) or a + bb < c * (1 - 1e-9) or a + c < bb * (1 - 1e-9) or bb + c < a * (1 - 1e-9):
                problems.append(f"link '{name(b)}' ({mass:g} kg): expected positive principal moments that "
                                f"satisfy the triangle inequality, found {_fmt(inertia)} kg m^2")
    if problems:
        raise CheckFailed("; ".join(problems))
    from .dynamics import MujocoDynamics

    mm = MujocoDynamics(compiled, payload_mass=spec.payload_mass).mass_matrix(spec.home)
    eig = np.linalg.eigvalsh((mm + mm.T) / 2)
    if not (np.allclose(mm, mm.T, atol=1e-9) and eig[0] > 0):
        raise CheckFailed(f"expected M(home) symmetric positive definite, found eigenvalues {_fmt(eig)}")
    massless = [name(b) for b in moving if m.body_mass[b] == 0]
    moving_mass = float(np.sum(m.body_mass[moving]))
    return (f"{len(moving)} moving bodies, {moving_mass:.4g} kg; M(home) eigenvalues {eig[0]:.3g} to {eig[-1]:.3g}"
            + (f"; massless frames {massless}" if massless else ""))


def check_limits(spec: RobotSpec, compiled) -> str:
    from .description import urdf_joint_limits

    lim = spec.limits
    problems = []
    desc_effort = np.asarray(compiled.effort_limits, float)
    over = [f"{j} {e:g} > {d:g}" for j, e, d in zip(spec.joints, lim.effort, desc_effort) if e > d * (1 + 1e-9)]
    if over:
        problems.append(f"effort: expected <= the description's effort limit, found {', '.join(over)} N m")
    lo, hi = (np.asarray(x, float) for x in compiled.position_limits)
    out = [f"{j} [{a:g}, {b:g}] not in [{c:g}, {d:g}]" for j, a, b, c, d in
           zip(spec.joints, lim.position_lower, lim.position_upper, lo, hi) if a < c - 1e-9 or b > d + 1e-9]
    if out:
        problems.append(f"position: expected inside the description's limits, found {', '.join(out)}")
    checked_velocity = ""
    if compiled.kind == "urdf":
        table = urdf_joint_limits(spec.description)
        fast = []
        n_given = 0
        for j, v in zip(spec.joints, lim.velocity):
            dv = table.get(j, {}).get("velocity", math.nan)
            if math.isfinite(dv) and dv > 0:
                n_given += 1
                if v > dv * (1 + 1e-9):
                    fast.append(f"{j} {v:g} > {dv:g}")
        if fast:
            problems.append(f"velocity: expected <= the URDF's <limit velocity>, found {', '.join(fast)}")
        checked_velocity = f", velocity against the URDF for {n_given} joints"
    if problems:
        raise CheckFailed("; ".join(problems))
    unlimited = int(np.sum(~np.isfinite(lo) | ~np.isfinite(hi)))
    return (f"effort <= the description's, position inside it{checked_velocity}"
            + (f" ({unlimited} joints unlimited in the description)" if unlimited else ""))


def check_payload(spec: RobotSpec, compiled) -> str:
    import mujoco

    m = compiled.model
    bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, spec.payload_link)
    if bid < 0:
        raise CheckFailed(f"expected the link {spec.payload_link!r} in the description, found none")
    if bid not in set(_moving_bodies(m, compiled.joint_ids).tolist()):
        raise CheckFailed(f"expected the payload link {spec.payload_link!r} to be moved by the joints, found it "
                          "fixed to the base")
    return f"{spec.payload_link!r} moved by the joints"


def check_model_agreement(spec: RobotSpec, states: int = STATES, tolerance: float = TOLERANCE) -> str:
    import mujoco

    from residual_control.sim.plant import MujocoPlant, PlantParams

    from .dynamics import MujocoDynamics

    plant = MujocoPlant(PlantParams(payload_mass=spec.payload_mass), robot=spec)
    nominal = MujocoDynamics(spec.compile(plant.physics_dt), payload_mass=spec.payload_mass)
    m = copy.deepcopy(plant.model)
    off = mujoco.mjtDisableBit
    m.opt.disableflags |= int(off.mjDSBL_CONSTRAINT) | int(off.mjDSBL_SPRING) | int(off.mjDSBL_DAMPER)
    d = mujoco.MjData(m)
    qpos, dof = np.asarray(plant.compiled.qpos_ids), np.asarray(plant.compiled.dof_ids)
    rng = np.random.default_rng(SEED)
    worst_g = worst_id = 0.0
    scale = 0.0
    for _ in range(states):
        q = rng.uniform(spec.workspace_lower, spec.workspace_upper)
        qd = rng.uniform(-1.0, 1.0, spec.dof) * 0.5 * spec.limits.velocity
        qdd = rng.normal(size=spec.dof) * 5.0
        d.qpos[qpos], d.qvel[:] = q, 0.0
        mujoco.mj_forward(m, d)
        g_sim = d.qfrc_bias[dof].copy()
        d.qvel[dof], d.qacc[dof] = qd, qdd
        mujoco.mj_inverse(m, d)
        tau_sim = d.qfrc_inverse[dof].copy()
        worst_g = max(worst_g, float(np.max(np.abs(nominal.gravity_torque(q) - g_sim))))
        worst_id = max(worst_id, float(np.max(np.abs(nominal.inverse_dynamics(q, qd, qdd) - tau_sim))))
        scale = max(scale, float(np.max(np.abs(tau_sim))))
    if not (worst_g <= tolerance and worst_id <= tolerance):
        raise CheckFailed(f"expected the nominal model's gravity and inverse dynamics within {tolerance:g} N m of "
                          f"the simulator's at {states} workspace states, found differences up to {worst_g:.3g} "
                          f"(gravity) and {worst_id:.3g} N m (inverse dynamics)")
    return (f"gravity and inverse dynamics agree at {states} workspace states: max difference "
            f"{max(worst_g, worst_id):.2g} N m (torques up to {scale:.3g})")


def check_params_file(spec: RobotSpec) -> str:
    from residual_control import params_file
    from residual_control.core.errors import ConfigError
    from residual_control.core.params import NODE_PARAMS

    path = spec.params
    data = params_file.load(str(path))
    problems = []
    nodes = ("base_controller", "residual_mixer", "residual_policy")
    given = {node: params_file.node_params(data, node, defaults=False) for node in nodes}
    joints = list(given["base_controller"].get("joints") or [])
    if joints != list(spec.joints):
        problems.append(f"joints: expected robot.yaml's {list(spec.joints)} in this order, found {joints}")
    robot = given["base_controller"].get("robot")
    try:
        if not isinstance(robot, str) or not robot:
            raise RobotFolderError(f"expected a robot folder or a shipped robot's name, found {robot!r}")
        folder = robot_folder(robot).resolve()
        if folder != spec.root:
            problems.append(f"robot: expected a value that resolves to {spec.root}, found {robot!r} ({folder})")
    except RobotFolderError as exc:
        problems.append(f"robot: {exc}")
    for node in nodes:
        values = given[node]
        flat = dict(values)
        for k, v in values.items():
            if isinstance(v, dict):
                flat.pop(k)
                flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        for s in NODE_PARAMS[node]:
            if not s.robot_specific:
                continue
            if s.name not in flat:
                problems.append(f"{node}: {s.name}: expected a value (robot-specific, no default), found none")
                continue
            try:
                value = s.validate(flat[s.name])
            except ConfigError as exc:
                problems.append(f"{node}: {exc}")
                continue
            if isinstance(value, (list, np.ndarray)) and s.name != "joints" and len(value) != spec.dof:
                problems.append(f"{node}: {s.name}: expected {spec.dof} values (one per joint), found {len(value)}")
    if not problems:
        base, mixer = given["base_controller"], given["residual_mixer"]
        pairs = [("command_max", base["command_max"], spec.limits.effort),
                 ("command_min", base["command_min"], -spec.limits.effort),
                 ("kp", base["kp"], spec.kp), ("kd", base["kd"], spec.kd),
                 ("residual_limit", mixer["residual_limit"], spec.residual_limit)]
        for key, found, want in pairs:
            if not np.allclose(np.asarray(found, float), want, rtol=1e-6, atol=1e-9):
                problems.append(f"{key}: expected robot.yaml's {_fmt(want)}, found {_fmt(found)}")
        payload = (base.get("model") or {}).get("payload_mass")
        if not math.isclose(float(payload), spec.payload_mass, rel_tol=1e-9, abs_tol=1e-12):
            problems.append(f"model.payload_mass: expected robot.yaml's payload_mass {spec.payload_mass:g}, "
                            f"found {payload}")
        over = [j for j, a, b in zip(spec.joints, mixer["residual_limit"], mixer["residual_limit_max"]) if a > b]
        if over:
            problems.append(f"residual_limit: expected <= residual_limit_max, found larger for {over}")
    if problems:
        raise CheckFailed(f"{path}: " + "; ".join(problems))
    return f"{path}: the robot's joints, robot: {robot}, every robot-specific parameter valid and as robot.yaml"


def check_reference(spec: RobotSpec) -> str:
    from residual_control import params_file

    path = spec.reference
    section = params_file.section(params_file.load(str(path)), "reference_publisher")
    if not section:
        raise CheckFailed(f"{path}: expected a reference_publisher: ros__parameters: section, found none")
    joints = list(section.get("joints") or [])
    if joints != list(spec.joints):
        raise CheckFailed(f"{path}: joints: expected robot.yaml's {list(spec.joints)}, found {joints}")
    kind = section.get("trajectory_type", "sinusoid")
    lo, hi, tol = spec.workspace_lower, spec.workspace_upper, 1e-9
    if kind == "sinusoid":
        try:
            c, a, f = (np.asarray(section[k], float) for k in ("center", "amplitude", "frequency_hz"))
            if c.shape != (spec.dof,) or a.shape != (spec.dof,) or f.shape != (spec.dof,):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CheckFailed(f"{path}: expected center, amplitude and frequency_hz with {spec.dof} numbers each, "
                              f"found {[section.get(k) for k in ('center', 'amplitude', 'frequency_hz')]}") from None
        q_lo, q_hi = c - np.abs(a), c + np.abs(a)
        v = 2 * math.pi * np.abs(f * a)
    elif kind == "min_jerk":
        w = np.asarray(section.get("waypoints") or [], float)
        if w.size == 0 or w.size % spec.dof:
            raise CheckFailed(f"{path}: waypoints: expected a multiple of {spec.dof} numbers, found {w.size}")
        w = w.reshape(-1, spec.dof)
        q_lo, q_hi, v = w.min(axis=0), w.max(axis=0), np.zeros(spec.dof)
    else:
        raise CheckFailed(f"{path}: trajectory_type: expected sinusoid or min_jerk, found {kind!r}")
    out = [j for j, a, b, lw, up in zip(spec.joints, q_lo, q_hi, lo, hi) if a < lw - tol or b > up + tol]
    if out:
        raise CheckFailed(f"{path}: expected the trajectory inside the workspace, found it leaves it for {out}")
    fast = [j for j, x, lim in zip(spec.joints, v, spec.limits.velocity) if x > lim]
    if fast:
        raise CheckFailed(f"{path}: expected a peak velocity within the velocity limits, found larger for {fast}")
    return f"{path}: {kind} inside the workspace, peak velocity {np.max(v / spec.limits.velocity):.0%} of the limit"


def check_plant(spec: RobotSpec) -> str:
    from residual_control.sim.plant import PlantParams

    try:
        p = PlantParams.from_yaml(spec.plant)
    except ValueError as exc:
        raise CheckFailed(str(exc)) from None
    out = [f"{k} {getattr(p, k):g} not in [{lo:g}, {hi:g}]" for k, (lo, hi) in spec.randomization.items()
           if not lo <= getattr(p, k) <= hi]
    if out:
        raise CheckFailed(f"{spec.plant}: expected inside robot.yaml's randomization ranges, found {', '.join(out)}")
    return f"{spec.plant}: inside the randomization ranges"


# ----------------------------------------------------------------------------------- the command
def run_checks(ref, emit: Callable[[str], None] = print) -> int:
    """Run every check on the robot folder ``ref``; emit one line each; return the exit status (module docstring)."""
    import yaml

    from .description import DescriptionError

    try:
        root = robot_folder(ref)
        data = yaml.safe_load((root / ROBOT_FILE).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise RobotFolderError(f"{root / ROBOT_FILE}: expected a mapping of robot keys, found "
                                   f"{type(data).__name__}")
    except (OSError, yaml.YAMLError, RobotFolderError) as exc:
        emit(f"robot.yaml: FAILED: cannot read it: {' '.join(str(exc).split())}")
        return 2
    results: List[Tuple[str, Optional[str], Optional[str]]] = []  # (name, ok detail, failure)

    def run(name: str, fn: Callable[[], str]) -> bool:
        try:
            detail = fn()
        except (CheckFailed, DescriptionError, RobotFolderError, ValueError, FileNotFoundError) as exc:
            emit(f"{name}: FAILED: {' '.join(str(exc).split())}")
            results.append((name, None, str(exc)))
            return False
        emit(f"{name}: ok ({detail})")
        results.append((name, detail, None))
        return True

    spec_box: list = []
    compiled_box: list = []

    def load() -> str:
        spec = load_robot(root)
        spec_box.append(spec)
        return f"{spec.name}: {spec.dof} joints, description {spec.description.name}"

    if not run("robot.yaml", load):
        emit("remaining checks: skipped (robot.yaml does not load)")
        return 1
    spec: RobotSpec = spec_box[0]

    def compile_() -> str:
        compiled = spec.compile()
        compiled_box.append(compiled)
        return f"{spec.description} ({compiled.kind}) with joints {list(spec.joints)}"

    needs_model = [("joints", check_joints), ("inertias", check_inertias), ("limits", check_limits),
                   ("payload link", check_payload)]
    if run("description", compile_):
        compiled = compiled_box[0]
        for name, fn in needs_model:
            run(name, lambda fn=fn: fn(spec, compiled))
        run("nominal model = simulator", lambda: check_model_agreement(spec))
    else:
        for name, _ in needs_model + [("nominal model = simulator", None)]:
            emit(f"{name}: skipped (the description does not compile)")
    for name, key, fn in (("params file", "params", check_params_file), ("reference", "reference", check_reference),
                          ("plant", "plant", check_plant)):
        if getattr(spec, key) is None:
            emit(f"{name}: ok (none named in robot.yaml)")
        else:
            run(name, lambda fn=fn: fn(spec))
    failed = [r[0] for r in results if r[2] is not None]
    emit(f"{spec.root}: {'all checks passed' if not failed else f'{len(failed)} checks FAILED: ' + ', '.join(failed)}")
    return 0 if not failed and compiled_box else 1


def run_check(args) -> int:
    """``residual-control robot check DIR``."""
    return run_checks(Path(args.dir), emit=lambda line: print(line, flush=True))
