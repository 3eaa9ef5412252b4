"""Compile a robot description (URDF or MJCF) into the MuJoCo model the package runs on.

``compile_robot`` is the one place a description is read: the simulator, the nominal dynamics of the
base controllers and ``robot check`` all start from its ``CompiledRobot``. What it guarantees:

* the model has exactly the used (actuated) joints, in the order asked for; every other joint is
  welded (its equalities removed, the joint deleted), so fingers and passive joints become rigid;
* every used joint is driven by one torque motor (gear times gain maps ctrl to N m); a URDF joint
  gets a motor with ``ctrlrange`` = its effort limit, an MJCF motor is kept, a position or velocity
  servo is refused (the package commands joint effort);
* a massless ``payload`` body sits at the payload link, so a payload mass can be set at run time
  (``model.body_mass[payload_body_id]``) without recompiling;
* ``package://`` mesh URIs are resolved through the given package folders and the ament index;
  what cannot be found is reported by name;
* fixed base, physical inertias on every moving link, the timestep asked for and the implicitfast
  integrator.

Numpy and MuJoCo only: no ROS import (the ament index is used when it can be imported).
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import mujoco
import numpy as np

PathLike = Union[str, Path]

_HINGE = mujoco.mjtJoint.mjJNT_HINGE
_SLIDE = mujoco.mjtJoint.mjJNT_SLIDE
_JOINT_TYPE_NAMES = {
    mujoco.mjtJoint.mjJNT_FREE: "free",
    mujoco.mjtJoint.mjJNT_BALL: "ball",
    _HINGE: "hinge",
    _SLIDE: "slide",
}
# Mesh formats MuJoCo loads; a URDF collision mesh in another format (.dae) is dropped (with a note):
# a URDF's inertia comes from <inertial>, never from its geometry.
_MESH_FORMATS = (".stl", ".obj", ".msh")
PAYLOAD_BODY = "payload"
_PAYLOAD_INERTIA = 1e-9  # kg m^2, principal moments of the (point-like) payload body


class DescriptionError(ValueError):
    """A robot description that cannot be used, with what was expected and what was found."""


@dataclass(frozen=True)
class CompiledRobot:
    """A compiled description and the facts about its used joints (arrays in ``joint_names`` order).

    ``qpos_ids``/``dof_ids`` map q (in ``joint_names`` order) into ``data.qpos``/``data.qvel``;
    ``actuator_ids[i]`` drives joint i with ``actuator_gear[i]`` N m (or N) per unit of ctrl.
    ``position_limits`` is ``(lower, upper)`` with +-inf where a joint is unlimited;
    ``effort_limits`` the symmetric bound the command must respect (the tightest of the joint's
    actuator-force range and its motor's ctrl range times gear). ``damping``/``frictionloss`` are the
    nominal viscous (N m s/rad) and Coulomb (N m) terms. ``notes`` says what was changed on the way.
    """

    model: mujoco.MjModel
    joint_names: Tuple[str, ...]
    joint_ids: np.ndarray
    qpos_ids: np.ndarray
    dof_ids: np.ndarray
    actuator_ids: np.ndarray
    actuator_gear: np.ndarray
    payload_body_id: int
    payload_link: str
    position_limits: Tuple[np.ndarray, np.ndarray]
    effort_limits: np.ndarray
    damping: np.ndarray
    frictionloss: np.ndarray
    source: Path
    kind: str  # "urdf" or "mjcf"
    notes: Tuple[str, ...] = field(default=())

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    @property
    def body_names(self) -> Tuple[str, ...]:
        m = self.model
        return tuple(mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, i) or "" for i in range(m.nbody))


# ----------------------------------------------------------------------------------- reading
def description_kind(path: PathLike) -> str:
    """``"urdf"`` or ``"mjcf"`` from the root element (``<robot>`` or ``<mujoco>``)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DescriptionError(f"{path}: expected a URDF or MJCF file, found no such file") from None
    except (ET.ParseError, OSError) as exc:
        raise DescriptionError(f"{path}: expected a URDF or MJCF XML file, found unreadable XML ({exc})") from None
    tag = root.tag.split("}")[-1]
    if tag == "robot":
        if any(str(el.tag).startswith("{http://www.ros.org/wiki/xacro}") for el in root.iter()):
            raise DescriptionError(f"{path}: expected a plain URDF, found xacro macros; expand it first "
                                   f"(`xacro {path.name} > robot.urdf`)")
        return "urdf"
    if tag == "mujoco":
        return "mjcf"
    raise DescriptionError(f"{path}: expected a <robot> (URDF) or <mujoco> (MJCF) root element, found <{tag}>")


def urdf_joint_limits(path: PathLike) -> Dict[str, Dict[str, float]]:
    """``{joint: {lower, upper, velocity, effort}}`` from a URDF's ``<limit>`` tags (MuJoCo drops velocity).

    A missing attribute is NaN (continuous joints have no position limits).
    """
    path = Path(path)
    if description_kind(path) != "urdf":
        raise DescriptionError(f"{path}: expected a URDF (<robot> root) for its joint limits, found an MJCF")
    out: Dict[str, Dict[str, float]] = {}
    for joint in ET.parse(path).getroot().iter("joint"):
        name = joint.get("name")
        if not name or joint.get("type") in (None, "fixed", "floating", "planar"):
            continue
        limit = joint.find("limit")
        values = {}
        for key in ("lower", "upper", "velocity", "effort"):
            raw = limit.get(key) if limit is not None else None
            try:
                values[key] = float(raw) if raw is not None else math.nan
            except ValueError:
                raise DescriptionError(
                    f"{path}: joint '{name}' <limit {key}>: expected a number, found {raw!r}") from None
        out[name] = values
    return out


def _ament_share(package: str) -> Optional[Path]:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(package))
    except (PackageNotFoundError, ValueError, LookupError, OSError):  # OSError: no AMENT_PREFIX_PATH
        return None


def _resolve_mesh_file(uri: str, base_dir: Path, package_paths: Sequence[Path],
                       searched: List[str]) -> Tuple[Optional[Path], str]:
    """Return (an existing file or None, how the URI reads) for one mesh file name."""
    if uri.startswith("package://"):
        rest = uri[len("package://"):]
        package, _, inner = rest.partition("/")
        candidates = []
        for folder in package_paths:
            candidates.append(folder / package / inner)
            if folder.name == package:
                candidates.append(folder / inner)
        share = _ament_share(package)
        if share is not None:
            candidates.append(share / inner)
        for c in candidates:
            if c.is_file():
                return c.resolve(), uri
        searched.extend(str(c.parent) for c in candidates)
        return None, uri
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    p = Path(uri)
    if not p.is_absolute():
        p = base_dir / p
    if p.is_file():
        return p.resolve(), uri
    searched.append(str(p.parent))
    return None, uri


def _resolve_meshes(spec: mujoco.MjSpec, path: Path, kind: str, package_paths: Sequence[Path],
                    notes: List[str]) -> None:
    base_dir = Path(spec.modelfiledir or path.parent)
    if spec.meshdir:
        base_dir = base_dir / spec.meshdir
    missing: List[str] = []
    searched: List[str] = []
    drop = set()
    for mesh in spec.meshes:
        if not mesh.file:
            continue
        found, shown = _resolve_mesh_file(mesh.file, base_dir, package_paths, searched)
        if found is None:
            missing.append(shown)
            continue
        if kind == "urdf" and found.suffix.lower() not in _MESH_FORMATS:
            drop.add(mesh.name)
            notes.append(f"dropped collision mesh {shown} ({found.suffix} is not a format MuJoCo loads;"
                         " inertia comes from <inertial>)")
            continue
        mesh.file = str(found)
    if missing:
        folders = sorted(set(searched))
        raise DescriptionError(
            f"{path}: expected every mesh file to exist, found {len(missing)} missing: "
            + ", ".join(missing)
            + (f". Searched: {', '.join(folders)}" if folders
               else ". Searched: nothing (no package path given, no ament index)")
            + ("; pass the folder that contains the package with --package-path"
               if any(m.startswith("package://") for m in missing) else ""))
    if drop:
        for geom in list(spec.geoms):
            if geom.type == mujoco.mjtGeom.mjGEOM_MESH and geom.meshname in drop:
                spec.delete(geom)
        for mesh in list(spec.meshes):
            if mesh.name in drop:
                spec.delete(mesh)


def _wrap_compile_error(path: Path, exc: Exception) -> DescriptionError:
    text = str(exc).strip()
    element = re.search(r"Element name '([^']*)'", text)
    name = element.group(1) if element else None
    if "mass and inertia of moving bodies" in text and name:
        return DescriptionError(
            f"{path}: link '{name}' moves but has no mass or inertia: expected an <inertial> with a "
            f"positive mass and inertia on every moving link (MuJoCo: {text.splitlines()[0]})")
    if "inertia" in text and name:
        return DescriptionError(
            f"{path}: link '{name}' has a non-physical inertia: expected a positive-definite tensor whose "
            f"principal moments satisfy the triangle inequality (MuJoCo: {text.splitlines()[0]})")
    return DescriptionError(f"{path}: MuJoCo could not compile the description: {' '.join(text.split())}")


# ----------------------------------------------------------------------------------- compile
def _mimic_followers(spec: mujoco.MjSpec) -> Dict[str, str]:
    """Joints an equality ties to another joint (a URDF <mimic>) or to a constant: follower -> leader."""
    out = {}
    for eq in spec.equalities:
        if eq.type == mujoco.mjtEq.mjEQ_JOINT:
            out[eq.name1] = eq.name2 or "(a constant)"
    return out


def _limited(flag, lo_hi) -> bool:
    if flag == mujoco.mjtLimited.mjLIMITED_TRUE:
        return True
    if flag == mujoco.mjtLimited.mjLIMITED_FALSE:
        return False
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return lo < hi  # auto: limited when a range is given


def _servo_kind(act) -> Optional[str]:
    """None for a plain motor, else what the actuator is."""
    if act.dyntype != mujoco.mjtDyn.mjDYN_NONE:
        return f"an actuator with activation dynamics (dyntype {act.dyntype.name})"
    if act.gaintype != mujoco.mjtGain.mjGAIN_FIXED:
        return f"an actuator with gaintype {act.gaintype.name}"
    if act.biastype != mujoco.mjtBias.mjBIAS_NONE:
        kp = -float(act.biasprm[1])
        kv = -float(act.biasprm[2])
        if kp != 0.0:
            return f"a position servo (kp {kp:g})"
        if kv != 0.0:
            return f"a velocity servo (kv {kv:g})"
        return f"an actuator with biastype {act.biastype.name}"
    return None


def compile_robot(path: PathLike, joints: Optional[Sequence[str]] = None,
                  payload_link: Optional[str] = None, package_paths: Iterable[PathLike] = (),
                  timestep: float = 0.001) -> CompiledRobot:
    """Load a URDF or MJCF and compile it for the package (see the module docstring).

    ``joints``: the used joints in this order (default: every hinge/slide joint that does not mimic
    another); ``payload_link``: the body the payload is welded to (default: the body of the last used
    joint); ``package_paths``: folders that contain the packages ``package://`` URIs name.
    """
    path = Path(path)
    kind = description_kind(path)
    if not (isinstance(timestep, (int, float)) and math.isfinite(timestep) and timestep > 0):
        raise DescriptionError(f"timestep: expected a positive number of seconds, found {timestep!r}")
    paths = [Path(p).expanduser() for p in package_paths]
    for p in paths:
        if not p.is_dir():
            raise DescriptionError(f"package path {p}: expected a folder, found none")
    try:
        spec = mujoco.MjSpec.from_file(str(path))
    except Exception as exc:  # MuJoCo raises ValueError or its own types
        raise DescriptionError(
            f"{path}: MuJoCo could not parse the description: {' '.join(str(exc).split())}") from None
    notes: List[str] = []
    spec.compiler.fusestatic = False  # keep every link a body: the payload link may be a fixed one
    if kind == "urdf":
        # A URDF link without <inertial> is massless; never guess a mass from its collision geometry.
        spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_FALSE
    _resolve_meshes(spec, path, kind, paths, notes)

    for j in spec.joints:
        if j.type not in (_HINGE, _SLIDE):
            raise DescriptionError(
                f"{path}: joint '{j.name}' is a {_JOINT_TYPE_NAMES.get(j.type, j.type)} joint: expected a "
                "fixed-base arm (hinge/revolute and slide/prismatic joints only); a floating or mobile "
                "base is not supported")
    available = [j.name for j in spec.joints]
    followers = _mimic_followers(spec)
    if joints is None:
        used = [n for n in available if n not in followers]
        if not used:
            raise DescriptionError(f"{path}: expected at least one hinge or slide joint, found none")
    else:
        used = [str(n) for n in joints]
        if not used:
            raise DescriptionError(f"{path}: expected at least one joint in joints, found an empty list")
        dup = sorted({n for n in used if used.count(n) > 1})
        if dup:
            raise DescriptionError(f"{path}: joints: expected each joint once, found {dup} more than once")
        for n in used:
            if n not in available:
                raise DescriptionError(
                    f"{path}: joint '{n}' not found: expected one of the hinge/slide joints "
                    f"{available}")
    used_set = set(used)
    for n in used:
        if n in followers and (followers[n] in used_set or followers[n] == "(a constant)"):
            raise DescriptionError(
                f"{path}: joint '{n}' follows {followers[n]!r} through an equality (mimic): expected independent "
                f"joints; leave '{n}' out of joints")

    # Weld every joint that is not used: drop the equalities that involve it, its actuators, then it.
    removed = [n for n in available if n not in used_set]
    for eq in list(spec.equalities):
        if eq.type == mujoco.mjtEq.mjEQ_JOINT and (eq.name1 in removed or eq.name2 in removed):
            spec.delete(eq)
    for act in list(spec.actuators):
        if act.trntype == mujoco.mjtTrn.mjTRN_JOINT and act.target in removed:
            spec.delete(act)
    for n in removed:
        spec.delete(spec.joint(n))
    if removed:
        notes.append(f"welded joints not used: {removed}")

    # One motor per used joint.
    driving: Dict[str, list] = {n: [] for n in used}
    for act in list(spec.actuators):
        if act.trntype == mujoco.mjtTrn.mjTRN_JOINT and act.target in used_set:
            driving[act.target].append(act)
        else:
            notes.append(f"removed actuator '{act.name}' (it drives no used joint)")
            spec.delete(act)
    for n in used:
        acts = driving[n]
        if len(acts) > 1:
            raise DescriptionError(
                f"{path}: joint '{n}' is driven by {len(acts)} actuators {[a.name for a in acts]}: expected one "
                "torque motor per joint")
        if acts:
            kind_of = _servo_kind(acts[0])
            if kind_of is not None:
                raise DescriptionError(
                    f"{path}: actuator '{acts[0].name}' on joint '{n}' is {kind_of}: expected a torque motor "
                    f"(the package commands joint effort); replace it by <motor joint=\"{n}\" gear=\"1\" "
                    "ctrlrange=\"-EFFORT EFFORT\"/>")
            continue
        j = spec.joint(n)
        if not _limited(j.actfrclimited, j.actfrcrange) or max(abs(float(x)) for x in j.actfrcrange) == 0.0:
            raise DescriptionError(
                f"{path}: joint '{n}' has no actuator and no effort limit: expected <limit effort=\"...\"> "
                "(URDF) or an actuatorfrcrange / a <motor> (MJCF) to size its torque motor")
        act = spec.add_actuator(name=f"{n}_motor", target=n, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_motor()
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.ctrlrange = [float(j.actfrcrange[0]), float(j.actfrcrange[1])]
        notes.append(f"added torque motor '{n}_motor' (ctrlrange = effort limit)")

    # A real arm has no free gravity compensation: the controllers compensate gravity themselves.
    lifted = [b.name for b in spec.bodies if float(b.gravcomp) != 0.0]
    for name in lifted:
        spec.body(name).gravcomp = 0.0
    if lifted:
        notes.append(f"removed gravcomp from bodies {lifted} (the base controller compensates gravity)")

    # Payload body.
    bodies = [b.name for b in spec.bodies if b.name and b.name != "world"]
    if payload_link is None:
        payload_link = spec.joint(used[-1]).parent.name
    if payload_link not in bodies:
        raise DescriptionError(
            f"{path}: payload link '{payload_link}' not found: expected one of the links {bodies}")
    name = PAYLOAD_BODY
    k = 0
    while name in bodies:
        k += 1
        name = f"{PAYLOAD_BODY}_{k}"
    payload = spec.body(payload_link).add_body(name=name, pos=[0.0, 0.0, 0.0])
    payload.mass = 0.0
    payload.inertia = [_PAYLOAD_INERTIA] * 3
    payload.explicitinertial = True

    spec.option.timestep = float(timestep)
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    try:
        model = spec.compile()
    except Exception as exc:
        raise _wrap_compile_error(path, exc) from None
    return _compiled(model, path, kind, used, name, payload_link, notes)


def _compiled(model: mujoco.MjModel, path: Path, kind: str, used: List[str], payload_name: str,
              payload_link: str, notes: List[str]) -> CompiledRobot:
    n = len(used)
    jid = np.array([mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in used], dtype=int)
    if model.njnt != n or np.any(jid < 0):
        raise DescriptionError(f"{path}: expected {n} joints {used} after welding, found {model.njnt}")
    if model.nq != n or model.nv != n:
        raise DescriptionError(
            f"{path}: expected a fixed-base arm with nq = nv = {n}, found nq {model.nq}, nv {model.nv}")
    qpos_ids = model.jnt_qposadr[jid].astype(int)
    dof_ids = model.jnt_dofadr[jid].astype(int)
    act_ids = np.full(n, -1, dtype=int)
    for a in range(model.nu):
        if model.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT:
            hits = np.nonzero(jid == model.actuator_trnid[a, 0])[0]
            if hits.size:
                act_ids[hits[0]] = a
    gear = model.actuator_gear[act_ids, 0] * model.actuator_gainprm[act_ids, 0]
    effort = np.full(n, np.inf)
    for i in range(n):
        a, j = act_ids[i], jid[i]
        if gear[i] == 0.0:
            raise DescriptionError(
                f"{path}: motor on joint '{used[i]}' has gear x gain 0: expected a nonzero torque per ctrl")
        if model.jnt_actfrclimited[j]:
            lo, hi = model.jnt_actfrcrange[j]
            effort[i] = min(effort[i], -lo, hi)
        if model.actuator_forcelimited[a]:
            lo, hi = model.actuator_forcerange[a]
            effort[i] = min(effort[i], -lo, hi)
        if model.actuator_ctrllimited[a]:
            lo, hi = np.sort(model.actuator_ctrlrange[a] * gear[i])
            effort[i] = min(effort[i], -lo, hi)
        if not (math.isfinite(effort[i]) and effort[i] > 0):
            raise DescriptionError(
                f"{path}: joint '{used[i]}': expected a finite positive effort limit (ctrlrange, forcerange or "
                f"actuatorfrcrange containing 0), found {effort[i]}")
    # Every moving link group (bodies welded together) carries mass.
    for i, j in enumerate(jid):
        body = int(model.jnt_bodyid[j])
        group = np.nonzero(model.body_weldid == model.body_weldid[body])[0]
        if float(np.sum(model.body_mass[group])) <= 0.0:
            link = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body)
            raise DescriptionError(
                f"{path}: link '{link}' (moved by joint '{used[i]}') has no mass: expected a positive mass")
    lower = np.where(model.jnt_limited[jid].astype(bool), model.jnt_range[jid, 0], -np.inf)
    upper = np.where(model.jnt_limited[jid].astype(bool), model.jnt_range[jid, 1], np.inf)
    payload_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, payload_name)
    for arr in (qpos_ids, dof_ids, act_ids, gear, effort, lower, upper):
        arr.setflags(write=False)
    damping = model.dof_damping[dof_ids].copy()
    friction = model.dof_frictionloss[dof_ids].copy()
    damping.setflags(write=False)
    friction.setflags(write=False)
    jid.setflags(write=False)
    return CompiledRobot(
        model=model, joint_names=tuple(used), joint_ids=jid, qpos_ids=qpos_ids, dof_ids=dof_ids,
        actuator_ids=act_ids, actuator_gear=gear, payload_body_id=int(payload_id), payload_link=payload_link,
        position_limits=(lower, upper), effort_limits=effort, damping=damping, frictionloss=friction,
        source=path.resolve(), kind=kind, notes=tuple(notes),
    )
