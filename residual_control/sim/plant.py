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

Sign convention: the description's (positive torque accelerates the joint in
its positive direction).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence, Tuple, Union

import mujoco
import numpy as np

if TYPE_CHECKING:
    from residual_control.robot.folder import RobotSpec

#: Time scale relating velocity noise to position noise (see module docstring).
VELOCITY_NOISE_TIMESCALE = 0.05

@dataclass(frozen=True)
class PlantParams:
    """Physical parameters of the simulated plant. Defaults = nominal plant."""

    payload_mass: float = 0.2          # kg at the tip
    friction_scale: float = 1.0        # x the description's joint friction
    damping_scale: float = 1.0         # x the description's joint damping
    actuator_gain: float = 1.0         # applied torque = gain x commanded torque
    actuator_latency: float = 0.0      # s between a command and its application
    sensor_noise_std: float = 0.0      # rad, Gaussian noise on the measured positions

    def __post_init__(self) -> None:
        for f in fields(self):
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
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> "PlantParams":
        """Build from a mapping holding exactly the six parameter keys."""
        if not isinstance(values, Mapping):
            raise ValueError(
                f"PlantParams: expected a mapping of {list(cls.field_names())}, "
                f"found {type(values).__name__}"
            )
        expected = set(cls.field_names())
        found = set(values)
        unknown = sorted(found - expected)
        missing = sorted(expected - found)
        if unknown or missing:
            raise ValueError(
                f"PlantParams: expected keys {sorted(expected)}, found {sorted(found)}"
                + (f"; unknown {unknown}" if unknown else "")
                + (f"; missing {missing}" if missing else "")
            )
        return cls(**{k: values[k] for k in cls.field_names()})

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
        return asdict(self)

    def replace(self, **changes: float) -> "PlantParams":
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
        m = self.model
        m.body_mass[self._payload_id] = params.payload_mass
        m.dof_damping[:] = self._nominal_damping * params.damping_scale
        m.dof_frictionloss[:] = self._nominal_frictionloss * params.friction_scale
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


__all__ = ["PlantParams", "MujocoPlant", "VELOCITY_NOISE_TIMESCALE"]
