"""MuJoCo plant of any robot folder with randomizable "real robot" effects (the reality gap).

Pure Python (numpy + mujoco), no rclpy: used by the ROS 2 simulator node, the
training data generators and the tests. The robot's description (URDF or MJCF) is
compiled for its used joints, with a torque motor on each and a payload body at
its payload link (:meth:`residual_control.robot.folder.RobotSpec.compile`); the
default robot is the built-in planar 2-link arm (robots/planar2).

Plant effects (``PlantParams``):

* ``payload_mass``   kg, mass of the payload body at the robot's payload link (``model.body_mass``).
* ``friction_scale`` multiplier on the nominal Coulomb friction (MJCF ``frictionloss``).
* ``damping_scale``  multiplier on the nominal viscous joint damping.
* ``actuator_gain``  multiplier on the commanded torque: applied torque =
  ``actuator_gain * clip(command, -torque_limits, torque_limits)`` (the motor's
  ``gainprm[0]``; the command is clamped to ``ctrlrange`` first).
* ``actuator_latency`` s, pure delay of the command, implemented as a FIFO of
  ``round(latency / physics_dt)`` whole physics steps (before the first command
  reaches the motor the FIFO holds zeros).
* ``sensor_noise_std`` rad, std of Gaussian noise on measured positions;
  measured velocities get an independent Gaussian noise of std
  ``sensor_noise_std / VELOCITY_NOISE_TIMESCALE`` (= 20 x, i.e. what a 50 ms
  smoothed finite difference of the noisy positions would roughly show).

Effects the simulator leaves out (the "real robot" a residual trained in simulation
meets): optional keys of a plant file, off by default and never sampled by the
training randomization (:meth:`PlantParams.sample`, robot.yaml ``randomization``).
Each is a mapping by joint or body name; a name not given gets the neutral value,
a name that is not one of the plant's joints (bodies) is refused by
:meth:`MujocoPlant.set_params`:

* ``joint_stiffness`` N m/rad per joint: a spring on the joint towards
  ``joint_rest``, joint torque ``joint_stiffness * (joint_rest - q)`` (MuJoCo's
  ``jnt_stiffness`` / ``qpos_spring``; added to a spring of the description, if any,
  as the equivalent single spring). Default 0 (no spring); must be >= 0.
* ``joint_rest`` rad per joint: the spring's rest position (default 0; any sign;
  without stiffness it has no effect).
* ``link_mass_scale`` per body (link) of the description: multiplier (> 0) on the
  body's mass AND its rotational inertia (a uniformly denser link: centre of mass
  unchanged; ``body_mass`` / ``body_inertia``). Default 1. The payload body the plant
  adds is not a link: ``payload_mass`` sets it. As for the payload, MuJoCo's
  mass-derived solver constants (``mj_setConst``) stay those of the nominal robot.
* ``coulomb_friction`` N m per joint: Coulomb (dry) friction added to the
  description's after ``friction_scale``: ``dof_frictionloss = friction_scale *
  nominal + coulomb_friction`` (MuJoCo's friction-loss constraint: it opposes the
  motion and holds a net torque below it at rest, softly). Default 0; must be >= 0.

Backlash (a dead zone between motor and link) is not modelled: MuJoCo has no
transmission dead zone, and an honest one needs a motor-side degree of freedom
in the compiled model, not a parameter of this plant.

A plant file without these keys simulates exactly (bit for bit) as before they
existed; :meth:`MujocoPlant.set_params` restores the description's nominal values
before applying any effect.

Sign convention: the description's (positive torque accelerates the joint in
its positive direction).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Optional, Sequence, Tuple, Union

import mujoco
import numpy as np

if TYPE_CHECKING:
    from residual_control.robot.folder import RobotSpec

#: Time scale relating velocity noise to position noise (see module docstring).
VELOCITY_NOISE_TIMESCALE = 0.05

#: The optional effects the simulator leaves out (module docstring): key -> (named what, neutral value,
#: lowest allowed value, whether the lowest is allowed).
EFFECTS = {
    "joint_stiffness": ("joint", 0.0, 0.0, True),
    "joint_rest": ("joint", 0.0, -math.inf, False),
    "link_mass_scale": ("body", 1.0, 0.0, False),
    "coulomb_friction": ("joint", 0.0, 0.0, True),
}


class NamedValues(Mapping):
    """An immutable, hashable mapping name -> float (one effect of :class:`PlantParams`), sorted by name."""

    __slots__ = ("_items",)

    def __init__(self, values: Union[Mapping[str, object], "NamedValues", None] = None, what: str = "values",
                 low: float = -math.inf, low_allowed: bool = False) -> None:
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise ValueError(f"{what}: expected a mapping of names to numbers (e.g. {{name: 1.0}}), "
                             f"found {values!r} ({type(values).__name__})")
        items = []
        for name, raw in values.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"{what}: expected names (non-empty strings) as keys, found {name!r}")
            if isinstance(raw, bool) or not isinstance(raw, (int, float, np.integer, np.floating)):
                raise ValueError(f"{what}[{name}]: expected a real number, found {raw!r} ({type(raw).__name__})")
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(f"{what}[{name}]: expected a finite value, found {value}")
            if value < low or (value == low and not low_allowed):
                raise ValueError(f"{what}[{name}]: expected a value {'>=' if low_allowed else '>'} {low}, "
                                 f"found {value}")
            items.append((name, value))
        self._items = tuple(sorted(items))

    def __getitem__(self, key: str) -> float:
        for name, value in self._items:
            if name == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NamedValues):
            return self._items == other._items
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"NamedValues({dict(self._items)!r})"


@dataclass(frozen=True)
class PlantParams:
    """Physical parameters of the simulated plant. Defaults = nominal plant."""

    payload_mass: float = 0.2          # kg at the tip
    friction_scale: float = 1.0        # x the description's joint friction
    damping_scale: float = 1.0         # x the description's joint damping
    actuator_gain: float = 1.0         # applied torque = gain x commanded torque
    actuator_latency: float = 0.0      # s between a command and its application
    sensor_noise_std: float = 0.0      # rad, Gaussian noise on the measured positions
    # Effects the simulator leaves out (module docstring): by joint / body name, off when empty.
    joint_stiffness: NamedValues = NamedValues()    # N m/rad per joint, towards joint_rest
    joint_rest: NamedValues = NamedValues()         # rad per joint
    link_mass_scale: NamedValues = NamedValues()    # x mass and inertia per body
    coulomb_friction: NamedValues = NamedValues()   # N m per joint, beyond friction_scale x nominal

    def __post_init__(self) -> None:
        for name, (_kind, _neutral, low, low_allowed) in EFFECTS.items():
            object.__setattr__(self, name, NamedValues(getattr(self, name), f"PlantParams.{name}",
                                                       low, low_allowed))
        for f in fields(self):
            if f.name in EFFECTS:
                continue
            raw = getattr(self, f.name)
            if isinstance(raw, bool) or not isinstance(raw, (int, float, np.integer, np.floating)):
                raise ValueError(
                    f"PlantParams.{f.name}: expected a real number, found {raw!r} "
                    f"({type(raw).__name__})"
                )
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(f"PlantParams.{f.name}: expected a finite value, found {value}")
            if value < 0.0:
                raise ValueError(f"PlantParams.{f.name}: expected a value >= 0, found {value}")
            object.__setattr__(self, f.name, value)
        if self.actuator_gain <= 0.0:
            raise ValueError(
                f"PlantParams.actuator_gain: expected a value > 0, found {self.actuator_gain}"
            )

    # ------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        """Return the six scalar parameters (all required in a plant file; the randomized ones)."""
        return tuple(f.name for f in fields(cls) if f.name not in EFFECTS)

    @classmethod
    def effect_names(cls) -> Tuple[str, ...]:
        """Return the optional effects the simulator leaves out (never randomized)."""
        return tuple(EFFECTS)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> "PlantParams":
        """Build from a mapping holding the six parameter keys and optionally the effect keys."""
        if not isinstance(values, Mapping):
            raise ValueError(
                f"PlantParams: expected a mapping of {list(cls.field_names())} "
                f"(optionally {list(cls.effect_names())}), found {type(values).__name__}"
            )
        required = set(cls.field_names())
        expected = required | set(cls.effect_names())
        found = set(values)
        unknown = sorted(found - expected, key=str)
        missing = sorted(required - found)
        if unknown or missing:
            raise ValueError(
                f"PlantParams: expected keys {sorted(required)} (optional {list(cls.effect_names())}), "
                f"found {sorted(found, key=str)}"
                + (f"; unknown {unknown}" if unknown else "")
                + (f"; missing {missing}" if missing else "")
            )
        return cls(**{k: values[k] for k in expected if k in values})

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "PlantParams":
        """Load a plant file such as config/plants/real.yaml (flat mapping)."""
        import yaml

        path = Path(path)
        try:
            with open(path, "r", encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except OSError as exc:
            raise ValueError(f"PlantParams: cannot read plant file {str(path)!r}: {exc}") from exc
        if data is None:
            data = {}
        try:
            return cls.from_mapping(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @classmethod
    def sample(cls, rng: np.random.Generator, ranges: Mapping[str, Sequence[float]]) -> "PlantParams":
        """Uniform sample of every parameter within ``ranges`` (one (low, high) per key: a robot's randomization)."""
        expected = set(cls.field_names())
        if set(ranges) != expected:
            raise ValueError(
                f"PlantParams.sample: expected range keys {sorted(expected)}, found {sorted(ranges)}"
            )
        values = {}
        for name in cls.field_names():
            low, high = (float(x) for x in ranges[name])
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise ValueError(
                    f"PlantParams.sample: range of {name}: expected finite low <= high, "
                    f"found ({low}, {high})"
                )
            values[name] = float(rng.uniform(low, high)) if high > low else low
        return cls(**values)

    def as_dict(self) -> dict:
        """Return the six scalars, plus each effect that is set (as a plain dict): :meth:`from_mapping`'s input."""
        out = {name: getattr(self, name) for name in self.field_names()}
        out.update({name: dict(getattr(self, name)) for name in self.effect_names() if getattr(self, name)})
        return out

    @property
    def has_effects(self) -> bool:
        """Whether an effect the simulator leaves out is on (a value other than its neutral one)."""
        return any(value != EFFECTS[name][1] for name in self.effect_names()
                   for value in getattr(self, name).values()
                   if name != "joint_rest")

    def replace(self, **changes: object) -> "PlantParams":
        return replace(self, **changes)


def _vector(value, n: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: expected {n} finite numbers, found {value!r}") from exc
    if arr.size != n:
        raise ValueError(f"{what}: expected {n} values, found {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: expected finite values, found {arr.tolist()}")
    return arr


class MujocoPlant:
    """Torque-controlled arm simulated by MuJoCo at ``physics_dt``.

    ``step(torque, duration)`` holds ``torque`` (N m, ordered as
    ``joint_names``) for ``round(duration / physics_dt)`` physics steps.
    """

    def __init__(self, params: Optional[PlantParams] = None, seed: int = 0,
                 physics_dt: float = 0.001, robot: Union["RobotSpec", str, Path, None] = None) -> None:
        if not (isinstance(physics_dt, (int, float)) and math.isfinite(physics_dt) and physics_dt > 0):
            raise ValueError(f"MujocoPlant: expected physics_dt > 0, found {physics_dt!r}")
        from residual_control.robot.folder import RobotSpec, load_robot

        self.robot = robot if isinstance(robot, RobotSpec) else load_robot(robot)
        self.compiled = self.robot.compile(float(physics_dt))
        self.model = self.compiled.model
        self.data = mujoco.MjData(self.model)
        c = self.compiled
        # The constants MuJoCo derives from the masses (the constraint solver's dof_invweight0 of the
        # friction) are those of the robot with its nominal payload; set_params changes the mass only.
        self.model.body_mass[c.payload_body_id] = self.robot.payload_mass
        mujoco.mj_setConst(self.model, self.data)
        self._n = c.dof
        self._joint_names = tuple(c.joint_names)
        self._qpos = np.asarray(c.qpos_ids)
        self._dof = np.asarray(c.dof_ids)
        self._act = np.asarray(c.actuator_ids)
        # ctrl = command / (gear x gain of the description's motor): the command is a joint torque.
        self._ctrl_scale = 1.0 / np.asarray(c.actuator_gear, dtype=float)
        self._nominal_gain = self.model.actuator_gainprm[self._act, 0].copy()
        self._payload_id = c.payload_body_id
        self._nominal_damping = self.model.dof_damping.copy()
        self._nominal_frictionloss = self.model.dof_frictionloss.copy()
        self._jnt = np.asarray(c.joint_ids)
        self._nominal_stiffness = self.model.jnt_stiffness.copy()
        self._nominal_qpos_spring = self.model.qpos_spring.copy()
        self._nominal_body_mass = self.model.body_mass.copy()
        self._nominal_body_inertia = self.model.body_inertia.copy()
        names = c.body_names
        # The links link_mass_scale may name: the description's bodies (not the world, not the payload body).
        self._link_ids = {names[i]: i for i in range(1, self.model.nbody) if i != self._payload_id and names[i]}
        self._torque_limits = np.asarray(c.effort_limits, dtype=float).copy()
        self._rng = np.random.default_rng(seed)
        self._params = PlantParams()
        self._fifo = np.zeros((0, self.model.nu))
        self._fifo_head = 0
        self.set_params(params if params is not None else PlantParams(payload_mass=self.robot.payload_mass))
        self.reset()

    @property
    def nominal_damping(self) -> np.ndarray:
        """Viscous joint damping of the description (N m s/rad), in joint order."""
        return self._nominal_damping[self._dof].copy()

    @property
    def nominal_frictionloss(self) -> np.ndarray:
        """Coulomb joint friction of the description (N m), in joint order."""
        return self._nominal_frictionloss[self._dof].copy()

    @property
    def link_names(self) -> Tuple[str, ...]:
        """The bodies ``PlantParams.link_mass_scale`` may name (the description's, in model order)."""
        return tuple(self._link_ids)

    def _check_names(self, params: PlantParams) -> None:
        for name, (kind, _neutral, _low, _allowed) in EFFECTS.items():
            given = list(getattr(params, name))
            allowed = self._joint_names if kind == "joint" else self.link_names
            unknown = [g for g in given if g not in allowed]
            if unknown:
                raise ValueError(
                    f"PlantParams.{name}: expected {kind} names of robot {self.robot.name!r} among "
                    f"{list(allowed)}, found {given} (unknown {unknown})"
                )

    # ---------------------------------------------------------------- params
    @property
    def params(self) -> PlantParams:
        return self._params

    def set_params(self, params: PlantParams) -> None:
        """Apply new plant parameters without resetting the state.

        On a latency change the delay line is refilled with the command
        currently reaching the motor.
        """
        if not isinstance(params, PlantParams):
            raise ValueError(f"set_params: expected PlantParams, found {type(params).__name__}")
        self._check_names(params)
        m = self.model
        # Nominal values first, then the effects the simulator leaves out (off: the nominal values).
        m.body_mass[:] = self._nominal_body_mass
        m.body_inertia[:] = self._nominal_body_inertia
        for name, scale in params.link_mass_scale.items():
            i = self._link_ids[name]
            m.body_mass[i] = self._nominal_body_mass[i] * scale
            m.body_inertia[i] = self._nominal_body_inertia[i] * scale
        m.body_mass[self._payload_id] = params.payload_mass
        m.dof_damping[:] = self._nominal_damping * params.damping_scale
        m.dof_frictionloss[:] = self._nominal_frictionloss * params.friction_scale
        for name, extra in params.coulomb_friction.items():
            m.dof_frictionloss[self._dof[self._joint_names.index(name)]] += extra
        m.jnt_stiffness[:] = self._nominal_stiffness
        m.qpos_spring[:] = self._nominal_qpos_spring
        for name, k in params.joint_stiffness.items():
            if k == 0.0:
                continue
            i = self._joint_names.index(name)
            jnt, adr = self._jnt[i], self._qpos[i]
            k0, r0 = self._nominal_stiffness[jnt], self._nominal_qpos_spring[adr]
            rest = params.joint_rest.get(name, 0.0)
            # k0 (r0 - q) + k (rest - q) = (k0 + k) (r - q): one spring of MuJoCo's.
            m.jnt_stiffness[jnt] = k0 + k
            m.qpos_spring[adr] = (k0 * r0 + k * rest) / (k0 + k)
        m.actuator_gainprm[self._act, 0] = self._nominal_gain * params.actuator_gain
        delay = int(round(params.actuator_latency / m.opt.timestep))
        if delay != self._fifo.shape[0]:
            current = self.data.ctrl.copy()
            self._fifo = np.tile(current, (delay, 1))
            self._fifo_head = 0
        self._params = params

    @property
    def latency_steps(self) -> int:
        return int(self._fifo.shape[0])

    def seed(self, seed: int) -> None:
        """Restart the sensor-noise generator from ``seed`` (the env derives it from its own seed)."""
        self._rng = np.random.default_rng(seed)

    # ----------------------------------------------------------------- state
    def reset(self, q0=None, qd0=None) -> None:
        """Reset time to 0, the state to (q0, qd0) (default zeros) and the delay line to zeros."""
        q = np.zeros(self._n) if q0 is None else _vector(q0, self._n, "reset q0")
        qd = np.zeros(self._n) if qd0 is None else _vector(qd0, self._n, "reset qd0")
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._qpos] = q
        self.data.qvel[self._dof] = qd
        self._fifo[:] = 0.0
        self._fifo_head = 0
        mujoco.mj_forward(self.model, self.data)

    def step(self, torque, duration: float) -> None:
        """Hold ``torque`` for ``round(duration / physics_dt)`` (>= 1) physics steps."""
        cmd = _vector(torque, self._n, "step torque")
        if not (isinstance(duration, (int, float, np.floating)) and math.isfinite(duration)):
            raise ValueError(f"step duration: expected a finite number of seconds, found {duration!r}")
        nstep = int(round(float(duration) / self.model.opt.timestep))
        if nstep < 1:
            raise ValueError(
                f"step duration: expected >= one physics step ({self.model.opt.timestep} s), "
                f"found {duration}"
            )
        m, d = self.model, self.data
        ctrl = np.zeros(m.nu)
        ctrl[self._act] = cmd * self._ctrl_scale
        cmd = ctrl
        delay = self._fifo.shape[0]
        if delay == 0:
            d.ctrl[:] = cmd
            mujoco.mj_step(m, d, nstep=nstep)
            return
        fifo = self._fifo
        for _ in range(nstep):
            head = self._fifo_head
            d.ctrl[:] = fifo[head]
            fifo[head] = cmd
            self._fifo_head = (head + 1) % delay
            mujoco.mj_step(m, d)

    # ------------------------------------------------------------ properties
    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def q(self) -> np.ndarray:
        return self.data.qpos[self._qpos]

    @property
    def qd(self) -> np.ndarray:
        return self.data.qvel[self._dof]

    @property
    def applied_torque(self) -> np.ndarray:
        """Joint torque the motors applied in the last physics step (after clamp, gain and delay)."""
        return self.data.actuator_force[self._act] * self.model.actuator_gear[self._act, 0]

    @property
    def joint_names(self) -> Tuple[str, ...]:
        return self._joint_names

    @property
    def torque_limits(self) -> np.ndarray:
        """Symmetric command limits |tau_i| <= limit_i (N m), before actuator_gain."""
        return self._torque_limits.copy()

    @property
    def physics_dt(self) -> float:
        return float(self.model.opt.timestep)

    def measure(self) -> Tuple[np.ndarray, np.ndarray]:
        """Noisy (q, qd): q + N(0, s^2), qd + N(0, (s / VELOCITY_NOISE_TIMESCALE)^2)."""
        q, qd = self.q, self.qd
        s = self._params.sensor_noise_std
        if s > 0.0:
            q += self._rng.normal(0.0, s, self._n)
            qd += self._rng.normal(0.0, s / VELOCITY_NOISE_TIMESCALE, self._n)
        return q, qd


__all__ = ["PlantParams", "NamedValues", "MujocoPlant", "EFFECTS", "VELOCITY_NOISE_TIMESCALE"]
