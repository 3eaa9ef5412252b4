"""A robot folder: everything robot-specific, as data (``robot.yaml`` next to the description).

The package knows a robot only through such a folder. ``robot.yaml`` holds (lists have one value per
joint, in ``joints`` order)::

    name: fer
    description: fer.urdf          # URDF or MJCF, relative to the folder
    package_paths: []              # folders holding the packages of package:// mesh URIs
    joints: [j1, j2, ...]          # the actuated joints used, in command order
    command_interface: effort      # the only one the package commands
    payload_link: fer_hand         # the body the payload is attached to
    payload_mass: 0.0              # kg, the payload the nominal model assumes
    limits: {position_lower, position_upper, velocity, effort}
    home: [...]                    # rad, the start pose
    workspace: {lower, upper}      # rad, the box the reference trajectories stay in
    gains: {kp, kd}                # the nominal base-controller gains
    residual_limit: [...]          # N m, the clamp of the residual
    randomization: {payload_mass: [lo, hi], friction_scale, damping_scale, actuator_gain,
                    actuator_latency, sensor_noise_std}
    params: params.yaml            # optional: the ROS params file of the nodes for this robot
    trajectories: {...}            # optional: the training references' randomization (default: derived
                                   # from the workspace and the velocity limits, trajectory_ranges)
    reference: reference.yaml      # optional: the reference_publisher params file of the demo/harness
    plant: plants/shifted.yaml     # optional: the demo's shifted plant (a PlantParams YAML)
    model: residual.onnx           # optional: the robot's trained residual (default for demo/faults)

``load_robot`` reads and validates it (errors name the file, the key, what was expected and what was
found); ``RobotSpec.compile`` builds the MuJoCo model of the description for the used joints.
Pure Python + numpy + PyYAML; the description compiler (MuJoCo) is imported only by ``compile``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np

from residual_control.paths import share_path

#: The built-in robot: the planar 2-link arm of the demo.
DEFAULT_ROBOT = "planar2"
ROBOT_FILE = "robot.yaml"
RANDOMIZATION_KEYS = ("payload_mass", "friction_scale", "damping_scale", "actuator_gain", "actuator_latency",
                      "sensor_noise_std")
COMMAND_INTERFACES = ("effort",)


class RobotFolderError(ValueError):
    """A robot folder or its robot.yaml is not what the package expects."""


@dataclass(frozen=True)
class Limits:
    """Per-joint limits (rad, rad/s, N m), in joint order."""

    position_lower: np.ndarray
    position_upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


@dataclass(frozen=True)
class RobotSpec:
    """A validated robot folder (see the module docstring)."""

    name: str
    root: Path
    description: Path
    joints: Tuple[str, ...]
    payload_link: str
    limits: Limits
    home: np.ndarray
    workspace_lower: np.ndarray
    workspace_upper: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    residual_limit: np.ndarray
    randomization: Mapping[str, Tuple[float, float]]
    payload_mass: float = 0.0
    command_interface: str = "effort"
    package_paths: Tuple[Path, ...] = ()
    params: Optional[Path] = None
    trajectories: Optional[Mapping[str, Any]] = None
    reference: Optional[Path] = None
    plant: Optional[Path] = None
    model: Optional[Path] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def dof(self) -> int:
        return len(self.joints)

    def trajectory_ranges(self) -> dict:
        """Return the randomization of the training references (``training.env.sample_trajectory_spec``).

        ``trajectories`` when robot.yaml gives it; else derived from the workspace box [lo, hi]
        (width w) and the velocity limits: sinusoids centred in [lo + w/4, hi - w/4] with amplitudes in
        [0.02 w, w/4] (so they stay in the box) at 0.1 to 0.6 Hz, capped so that the peak velocity is at
        most half the joint's limit; minimum-jerk segments between waypoints drawn in the box.
        """
        if self.trajectories is not None:
            return dict(self.trajectories)
        lo, hi = self.workspace_lower, self.workspace_upper
        w = hi - lo
        amp_hi = w / 4
        f_hi = np.minimum(0.6, 0.5 * self.limits.velocity / (2 * math.pi * np.maximum(amp_hi, 1e-9)))
        pairs = lambda a, b: [[float(x), float(y)] for x, y in zip(a, b)]  # noqa: E731
        return {
            "min_jerk_share": 0.4,
            "sinusoid": {"center": pairs(lo + w / 4, hi - w / 4), "amplitude": pairs(0.02 * w, amp_hi),
                         "frequency_hz": pairs(np.minimum(0.1, f_hi), f_hi)},
            "min_jerk": {"range": pairs(lo, hi), "segment_duration": [0.6, 2.0], "n_waypoints": [3, 5]},
            "initial_position_noise": float(min(0.05, 0.1 * float(np.min(np.maximum(w, 1e-3))))),
        }

    def compile(self, timestep: float = 0.001):
        """Compile the MuJoCo model of the description with exactly the used joints, a motor on each, a payload body.

        Returns :class:`residual_control.robot.description.CompiledRobot`.
        """
        from residual_control.robot.description import compile_robot

        return compile_robot(self.description, joints=self.joints, payload_link=self.payload_link,
                             package_paths=self.package_paths, timestep=timestep)

    def nominal_model(self, backend: str = "mujoco", timestep: float = 0.001):
        """Return the nominal rigid-body model (the base controller's): the description with ``payload_mass``."""
        from residual_control.robot.dynamics import make_dynamics

        return make_dynamics(self.compile(timestep), backend=backend, payload_mass=self.payload_mass)


def robot_folder(ref: Union[str, Path, None]) -> Path:
    """Return the folder of ``ref``: None (the built-in arm), a shipped robot's name, a folder or its robot.yaml."""
    if ref is None or str(ref) == "":
        ref = DEFAULT_ROBOT
    p = Path(ref).expanduser()
    if p.is_file() and p.name == ROBOT_FILE:
        return p.parent
    if p.is_dir() and (p / ROBOT_FILE).is_file():
        return p
    if len(p.parts) == 1:
        try:
            return share_path("robots", p.name)
        except FileNotFoundError:
            pass
    if p.is_dir():
        raise RobotFolderError(f"robot folder {str(p)!r}: expected a {ROBOT_FILE} in it, found none")
    shipped = shipped_robots()
    raise RobotFolderError(f"robot {str(ref)!r}: expected a robot folder (with {ROBOT_FILE}) or a shipped "
                           f"robot's name {shipped}, found neither")


def shipped_robots() -> list:
    """Names of the robot folders shipped with the package."""
    try:
        root = share_path("robots")
    except FileNotFoundError:
        return []
    return sorted(p.name for p in root.iterdir() if (p / ROBOT_FILE).is_file())


def load_robot(ref: Union[str, Path, None] = None) -> RobotSpec:
    """Read and validate a robot folder (``ref`` as :func:`robot_folder` takes it)."""
    import yaml

    root = robot_folder(ref).resolve()
    path = root / ROBOT_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RobotFolderError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, Mapping):
        raise RobotFolderError(f"{path}: expected a mapping of robot keys, found {type(data).__name__}")
    return spec_from_mapping(data, root, str(path))


def spec_from_mapping(data: Mapping[str, Any], root: Path, where: str = ROBOT_FILE) -> RobotSpec:
    """Validate ``robot.yaml``'s content (paths relative to ``root``)."""
    known = {"name", "description", "package_paths", "joints", "command_interface", "payload_link", "payload_mass",
             "limits", "home", "workspace", "gains", "residual_limit", "randomization", "params", "trajectories",
             "reference", "plant", "model"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RobotFolderError(f"{where}: unknown keys {unknown}; expected a subset of {sorted(known)}")

    def need(key):
        if data.get(key) is None:
            raise RobotFolderError(f"{where}: expected key {key!r}, found none")
        return data[key]

    joints = need("joints")
    if (not isinstance(joints, list) or not joints or not all(isinstance(j, str) and j for j in joints)
            or len(set(joints)) != len(joints)):
        raise RobotFolderError(f"{where}: joints: expected a list of distinct joint names, found {joints!r}")
    n = len(joints)

    def vec(key, value, positive=False, nonneg=False):
        what = f"{where}: {key}"
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise RobotFolderError(f"{what}: expected {n} numbers (one per joint), found {value!r}")
        try:
            arr = np.asarray([float(v) for v in value])
        except (TypeError, ValueError):
            raise RobotFolderError(f"{what}: expected {n} numbers, found {value!r}") from None
        if not np.all(np.isfinite(arr)):
            raise RobotFolderError(f"{what}: expected finite numbers, found {arr.tolist()}")
        if positive and np.any(arr <= 0):
            raise RobotFolderError(f"{what}: expected numbers > 0, found {arr.tolist()}")
        if nonneg and np.any(arr < 0):
            raise RobotFolderError(f"{what}: expected numbers >= 0, found {arr.tolist()}")
        return arr

    def section(key):
        value = need(key)
        if not isinstance(value, Mapping):
            raise RobotFolderError(f"{where}: {key}: expected a mapping, found {value!r}")
        return value

    def file(key, value):
        p = Path(str(value)).expanduser()
        p = p if p.is_absolute() else root / p
        if not p.is_file():
            raise RobotFolderError(f"{where}: {key}: expected a file, found no {str(p)!r}")
        return p.resolve()

    lim = section("limits")
    missing = [k for k in ("position_lower", "position_upper", "velocity", "effort") if k not in lim]
    if missing:
        raise RobotFolderError(f"{where}: limits: expected keys position_lower, position_upper, velocity, "
                               f"effort; missing {missing}")
    limits = Limits(vec("limits.position_lower", lim["position_lower"]),
                    vec("limits.position_upper", lim["position_upper"]),
                    vec("limits.velocity", lim["velocity"], positive=True),
                    vec("limits.effort", lim["effort"], positive=True))
    bad = [joints[i] for i in np.flatnonzero(limits.position_lower >= limits.position_upper)]
    if bad:
        raise RobotFolderError(f"{where}: limits: expected position_lower < position_upper, found not so for {bad}")
    home = vec("home", need("home"))
    ws = section("workspace")
    wl, wu = vec("workspace.lower", ws.get("lower")), vec("workspace.upper", ws.get("upper"))
    for label, arr in (("home", home), ("workspace.lower", wl), ("workspace.upper", wu)):
        outside = [joints[i] for i in np.flatnonzero((arr < limits.position_lower) | (arr > limits.position_upper))]
        if outside:
            raise RobotFolderError(f"{where}: {label}: expected inside the position limits, found outside for "
                                   f"{outside}")
    if np.any(wl > wu):
        raise RobotFolderError(f"{where}: workspace: expected lower <= upper per joint, found {wl.tolist()} > "
                               f"{wu.tolist()}")
    gains = section("gains")
    kp, kd = vec("gains.kp", gains.get("kp"), nonneg=True), vec("gains.kd", gains.get("kd"), nonneg=True)
    residual_limit = vec("residual_limit", need("residual_limit"), positive=True)
    over = [joints[i] for i in np.flatnonzero(residual_limit > limits.effort)]
    if over:
        raise RobotFolderError(f"{where}: residual_limit: expected <= limits.effort, found larger for {over}")
    rnd = section("randomization")
    if set(rnd) != set(RANDOMIZATION_KEYS):
        raise RobotFolderError(f"{where}: randomization: expected keys {list(RANDOMIZATION_KEYS)}, found "
                               f"{sorted(rnd)}")
    ranges = {}
    for k in RANDOMIZATION_KEYS:
        r = rnd[k]
        ok = isinstance(r, (list, tuple)) and len(r) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in r)
        if not ok or r[0] > r[1] or r[0] < 0 or (k == "actuator_gain" and r[0] <= 0):
            raise RobotFolderError(f"{where}: randomization.{k}: expected [low, high] with 0 <= low <= high "
                                   f"(> 0 for actuator_gain), found {r!r}")
        ranges[k] = (float(r[0]), float(r[1]))
    interface = data.get("command_interface", "effort")
    if interface not in COMMAND_INTERFACES:
        raise RobotFolderError(
            f"{where}: command_interface: expected one of {list(COMMAND_INTERFACES)}, found {interface!r} (a "
            f"position- or velocity-controlled arm: command its effort interface, or run the residual on "
            f"the torque loop below the position controller)")
    payload_mass = data.get("payload_mass", 0.0)
    if isinstance(payload_mass, bool) or not isinstance(payload_mass, (int, float)) or not payload_mass >= 0:
        raise RobotFolderError(f"{where}: payload_mass: expected a number >= 0, found {payload_mass!r}")
    payload_link = need("payload_link")
    if not isinstance(payload_link, str) or not payload_link:
        raise RobotFolderError(f"{where}: payload_link: expected a link name, found {payload_link!r}")
    pkg = data.get("package_paths") or []
    if not isinstance(pkg, list):
        raise RobotFolderError(f"{where}: package_paths: expected a list of folders, found {pkg!r}")
    package_paths = tuple((root / Path(str(p)).expanduser()).resolve() for p in pkg)
    params = file("params", data["params"]) if data.get("params") else None
    reference = file("reference", data["reference"]) if data.get("reference") else None
    plant = file("plant", data["plant"]) if data.get("plant") else None
    model = file("model", data["model"]) if data.get("model") else None
    trajectories = data.get("trajectories")
    if trajectories is not None:
        trajectories = _check_trajectories(trajectories, n, f"{where}: trajectories")
    name = str(data.get("name") or root.name)
    return RobotSpec(name=name, root=root, description=file("description", need("description")),
                     joints=tuple(joints), payload_link=payload_link, limits=limits, home=home,
                     workspace_lower=wl, workspace_upper=wu, kp=kp, kd=kd, residual_limit=residual_limit,
                     randomization=ranges, payload_mass=float(payload_mass), command_interface=interface,
                     package_paths=package_paths, params=params, trajectories=trajectories,
                     reference=reference, plant=plant, model=model, raw=dict(data))


def _check_trajectories(cfg: Any, n: int, where: str) -> dict:
    """Validate a ``trajectories`` mapping: per-joint [low, high] ranges of the reference randomization."""
    def ranges(key, value, per_joint=True):
        rows = value if per_joint else [value]
        ok = isinstance(rows, list) and (len(rows) == n or not per_joint) and all(
            isinstance(r, (list, tuple)) and len(r) == 2 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in r)
            and r[0] <= r[1] for r in rows)
        if not ok:
            want = f"{n} [low, high] pairs (one per joint)" if per_joint else "one [low, high] pair"
            raise RobotFolderError(f"{where}.{key}: expected {want}, found {value!r}")

    if not isinstance(cfg, Mapping) or not {"sinusoid", "min_jerk"} <= set(cfg):
        raise RobotFolderError(f"{where}: expected a mapping with sinusoid and min_jerk, found {cfg!r}")
    for key in ("center", "amplitude", "frequency_hz"):
        ranges(f"sinusoid.{key}", (cfg["sinusoid"] or {}).get(key))
    ranges("min_jerk.range", (cfg["min_jerk"] or {}).get("range"))
    ranges("min_jerk.segment_duration", (cfg["min_jerk"] or {}).get("segment_duration"), per_joint=False)
    ranges("min_jerk.n_waypoints", (cfg["min_jerk"] or {}).get("n_waypoints"), per_joint=False)
    return dict(cfg)
