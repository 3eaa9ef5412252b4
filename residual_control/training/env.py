"""``ResidualEnv``: the residual-control loop of the ROS graph as a gymnasium env, no ROS.

One step = one control period (1 / control_rate_hz, 100 Hz by default):

1. the plant's noisy joint state (q, qd) is measured (``MujocoPlant.measure``);
2. the reference (q_ref, qd_ref) is sampled at the current time;
3. a_base = base.compute(q, qd, q_ref, qd_ref, t) -- the SAME core base controller
   (:func:`residual_control.core.make_base_controller` on the params file's
   ``base_controller`` section), called through the runtime's loop
   (:class:`residual_control.core.step.ResidualLoop`, ``base_action``);
4. the observation is built by the core :class:`ObservationAssembler` from the
   same joint state, reference, a_base and the perception (payload_mass +
   N(0, 0.05^2), refreshed at 30 Hz and held in between);
5. the agent answers with an action in [-1, 1]^n, scaled by residual_limit into
   da; as in the ROS graph, da reaches the core :class:`Mixer` ``residual_delay_steps``
   periods later (default 1: it is mixed with the NEXT base action), through the
   same loop (``ResidualLoop.mix``);
6. a = clip(a_base + g * clip(da_delayed, +-eps), command limits) (the Mixer, with
   no recovery hold/ramp) is held on the plant for one period.

Reward: ``-(sum_i (q_ref_i - q_i)^2) / error_scale^2 - action_weight * |da / eps|^2``,
with q the true (noise-free) position after the step.

``full_action=True`` is the from-scratch baseline: no base controller (a_base
observed as 0), the action in [-1, 1]^n is the whole torque scaled into the
command limits (the command clamp still applies).
"""
from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np

from residual_control.core import (Mixer, MixerConfig, ObservationAssembler, default_observation_names,
                                   make_base_controller)
from residual_control.core.observation import ObservationLowpass
from residual_control.core.step import ReferenceAcceleration, ResidualLoop
from residual_control.robot.folder import load_robot
from residual_control.robot.nominal import nominal_model
from residual_control.sim.plant import MujocoPlant, PlantParams
from residual_control.sim.trajectories import make_trajectory

from .common.config import EnvConfig, load_params_file

_ENV = EnvConfig()  # the defaults of the training configs' env section

def sample_trajectory_spec(rng: np.random.Generator, cfg: Mapping[str, Any], n_joints: int) -> dict:
    """Return a random reference spec for :func:`make_trajectory`, within ``cfg``'s safe ranges.

    ``cfg``: a robot's reference randomization (:meth:`residual_control.robot.folder.RobotSpec.trajectory_ranges`).
    """
    if rng.random() < float(cfg["min_jerk_share"]):
        mj = cfg["min_jerk"]
        k = int(rng.integers(int(mj["n_waypoints"][0]), int(mj["n_waypoints"][1]) + 1))
        wp = [[float(rng.uniform(*mj["range"][j])) for j in range(n_joints)] for _ in range(k)]
        return {"type": "min_jerk", "waypoints": wp,
                "segment_duration": float(rng.uniform(*mj["segment_duration"])), "cycle": True}
    s = cfg["sinusoid"]
    return {"type": "sinusoid",
            "center": [float(rng.uniform(*s["center"][j])) for j in range(n_joints)],
            "amplitude": [float(rng.uniform(*s["amplitude"][j])) for j in range(n_joints)],
            "frequency_hz": [float(rng.uniform(*s["frequency_hz"][j])) for j in range(n_joints)],
            "phase": [float(rng.uniform(0, 2 * math.pi)) for _ in range(n_joints)]}


class ResidualEnv(gym.Env):
    """Residual (default) or full-action control of the MuJoCo arm; see the module docstring."""

    metadata = {"render_modes": []}

    def __init__(self, params_file: str = "config/residual_control.yaml", *, full_action: bool = False,
                 residual_delay_steps: int = _ENV.residual_delay_steps,
                 randomization: Mapping[str, Sequence[float]] | None = None,
                 plant: PlantParams | Mapping[str, float] | None = None,
                 base_gain_randomization: float = _ENV.base_gain_randomization,
                 episode_seconds: float = _ENV.episode_seconds,
                 trajectory: Mapping[str, Any] | None = None,
                 trajectories: Mapping[str, Any] | None = None,
                 perception_noise_std: float = _ENV.perception_noise_std,
                 perception_rate_hz: float = _ENV.perception_rate_hz,
                 error_scale: float = _ENV.error_scale, action_weight: float = _ENV.action_weight,
                 residual_gain: float = 1.0,
                 observation_names: Sequence[str] | None = None, physics_dt: float = 0.001,
                 start_at_rest: bool = False, reference_acceleration: bool = _ENV.reference_acceleration,
                 observation_lowpass_hz: float = _ENV.observation_lowpass_hz, seed: int | None = None) -> None:
        super().__init__()
        pf = load_params_file(params_file)
        self.params_file = pf
        #: The robot folder named by the params file's ``robot`` (default: the built-in arm).
        self.robot = load_robot(pf["base_params"].get("robot") or None)
        self.joints = tuple(pf["joints"])
        self.n = len(self.joints)
        self.dt = 1.0 / pf["control_rate_hz"]
        self.residual_limit = np.asarray(pf["residual_limit"], dtype=float)
        self.command_min = np.asarray(pf["command_min"], dtype=float)
        self.command_max = np.asarray(pf["command_max"], dtype=float)
        self.perception_features = tuple(pf["perception_features"])
        self.full_action = bool(full_action)
        self.delay = int(residual_delay_steps)
        if self.delay < 0:
            raise ValueError(f"residual_delay_steps: expected >= 0, found {self.delay}")
        ranges = dict(self.robot.randomization)
        ranges.update({k: tuple(v) for k, v in (randomization or {}).items()})
        self.randomization = ranges
        if plant is not None and not isinstance(plant, PlantParams):
            plant = PlantParams.from_mapping(plant)
        self.fixed_plant = plant
        self.base_gain_randomization = float(base_gain_randomization)
        self.episode_steps = int(round(episode_seconds / self.dt))
        self.fixed_trajectory = dict(trajectory) if trajectory else None
        self.trajectory_cfg = {**self.robot.trajectory_ranges(), **(trajectories or {})}
        # An episode ends when a joint comes within limit_margin of its position limit.
        self.limit_margin = 0.1
        self.q_lower = self.robot.limits.position_lower + self.limit_margin
        self.q_upper = self.robot.limits.position_upper - self.limit_margin
        self.perception_noise_std = float(perception_noise_std)
        self.perception_period = 1.0 / float(perception_rate_hz)
        self.error_scale = float(error_scale)
        self.action_weight = float(action_weight)
        self.start_at_rest = bool(start_at_rest)

        self.base_params = dict(pf["base_params"])
        #: The nominal model of pd_gravity / computed_torque (the params file's robot and model.*).
        self.nominal = nominal_model(self.base_params)
        self.base = make_base_controller(self.base_params, self.nominal)
        names = list(observation_names) if observation_names else default_observation_names(
            self.joints, self.perception_features, bool(reference_acceleration))
        self.assembler = ObservationAssembler(names, self.joints, self.perception_features)
        self.observation_names = tuple(names)
        #: The observation's low-pass (env.observation_lowpass_hz; None: none), as the runtime runs it.
        self.observation_lowpass_hz = float(observation_lowpass_hz)
        self.lowpass = (ObservationLowpass(self.observation_lowpass_hz, self.dt) if self.observation_lowpass_hz > 0
                        else None)
        mp = dict(pf["mixer_params"])
        mp.update(joints=self.joints, residual_gain=float(residual_gain), recovery_hold_time=0.0,
                  recovery_ramp_time=0.0, residual_limit=self.residual_limit,
                  command_min=self.command_min, command_max=self.command_max)
        mp.setdefault("residual_limit_max", np.maximum(self.residual_limit, mp.get("residual_limit_max",
                                                                                    self.residual_limit)))
        self.mixer_config = MixerConfig.from_params(mp)
        self.mixer = Mixer(self.mixer_config)
        #: The runtime's loop around the base controller and the mixer; the agent is the policy.
        self.loop = ResidualLoop(self.joints, self.base, None, self.mixer)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.assembler.size,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.n,), np.float32)
        if seed is not None:
            # Every draw (plant, gains, reference, start state, sensor noise, perception) comes from
            # the env's np_random or from the plant's generator re-derived from it in reset: two envs
            # with the same seed give the same episodes (gymnasium's check_env determinism checks).
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        self.plant = MujocoPlant(self.fixed_plant or PlantParams(payload_mass=self.robot.payload_mass),
                                 physics_dt=physics_dt, robot=self.robot)
        self.plant_params = self.plant.params
        self.trajectory = None
        self.trajectory_spec: dict = {}
        self.time = 0.0
        self._steps = 0

    # ------------------------------------------------------------------ helpers
    @property
    def action_scale(self) -> np.ndarray:
        """Torque (N m) per unit action: residual_limit, or half the command range (full_action)."""
        return (self.command_max - self.command_min) / 2 if self.full_action else self.residual_limit

    def action_to_torque(self, action) -> np.ndarray:
        a = np.clip(np.asarray(action, dtype=float).reshape(-1), -1.0, 1.0)
        if self.full_action:
            return (self.command_max + self.command_min) / 2 + a * self.action_scale
        return a * self.residual_limit

    def _perceive(self) -> None:
        if self.time + 1e-9 >= self._next_perception:
            self.perception = np.array([self.plant_params.payload_mass + self.np_random.normal(
                0.0, self.perception_noise_std)])[: len(self.perception_features)]
            self.perception_time = self.time
            self._next_perception += self.perception_period

    def _observe(self) -> np.ndarray:
        self.q_meas, self.qd_meas = self.plant.measure()
        self.q_ref, self.qd_ref, self.qdd_ref = self.trajectory.sample(self.time)
        self._perceive()
        self.loop.reference.set(self.q_ref, self.qd_ref)
        # the reference acceleration as the runtime has it: the difference of the references' velocities
        # (core.step.ReferenceAcceleration), one reference per period stamped with its time
        qdd_ref = self._reference_acceleration.update(self.qd_ref, self.time)
        if self.full_action:
            self.a_base = np.zeros(self.n)
        else:
            self.a_base, _ = self.loop.base_action(self.q_meas, self.qd_meas, self.time)
        self.obs = self.assembler.assemble(self.q_meas, self.qd_meas, self.q_ref, self.qd_ref, self.a_base,
                                           self.perception if self.perception_features else None, qdd_ref)
        if self.lowpass is not None:
            self.obs = self.lowpass.update(self.obs, self.time)
        return self.obs

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        self.plant.seed(int(rng.integers(2**63)))
        options = dict(options or {})
        plant = options.get("plant", self.fixed_plant)
        if plant is None:
            plant = PlantParams.sample(rng, self.randomization)
        elif not isinstance(plant, PlantParams):
            plant = PlantParams.from_mapping(plant)
        self.plant.set_params(plant)
        self.plant_params = plant
        if self.base_gain_randomization > 0 and not self.full_action:
            p = dict(self.base_params)
            r = self.base_gain_randomization
            p["kp"] = [k * rng.uniform(1 - r, 1 + r) for k in self.base_params["kp"]]
            p["kd"] = [k * rng.uniform(1 - r, 1 + r) for k in self.base_params["kd"]]
            self.base = make_base_controller(p, self.nominal)
        self.base.reset()
        spec = options.get("trajectory", self.fixed_trajectory)
        if spec is None:
            spec = sample_trajectory_spec(rng, self.trajectory_cfg, self.n)
        self.trajectory_spec = dict(spec)
        self.trajectory = make_trajectory(spec)
        q0, qd0, _ = self.trajectory.sample(0.0)
        if not self.start_at_rest and options.get("trajectory") is None and self.fixed_trajectory is None:
            q0 = q0 + rng.normal(0.0, float(self.trajectory_cfg["initial_position_noise"]), self.n)
            qd0 = qd0 * rng.uniform(0.0, 1.0)
        else:
            qd0 = np.zeros(self.n)
        self.plant.reset(q0, qd0)
        self.mixer = Mixer(self.mixer_config)
        self.loop.controller, self.loop.mixer = self.base, self.mixer
        self._queue: deque = deque()
        self.time = 0.0
        self._steps = 0
        self._next_perception = 0.0
        self._reference_acceleration = ReferenceAcceleration(self.n)
        if self.lowpass is not None:
            self.lowpass.reset()
        self.perception = np.zeros(len(self.perception_features))
        self.perception_time = 0.0
        obs = self._observe()
        return obs.copy(), {"plant": plant.as_dict(), "trajectory": self.trajectory_spec}

    def step(self, action):
        torque = self.action_to_torque(action)
        unit = torque / self.action_scale if not self.full_action else np.clip(
            np.asarray(action, dtype=float).reshape(-1), -1, 1)
        t = self.time
        if self.full_action:
            command = np.clip(torque, self.command_min, self.command_max)
            applied = command
        else:
            self._queue.append((torque, t))
            da, stamp = self._queue.popleft() if len(self._queue) > self.delay else (None, None)
            _, out = self.loop.mix(self.a_base, t, t, da, self.joints, stamp)
            command = out.command
            applied = out.applied_residual
        self.command = command
        self.applied_residual = applied
        self.plant.step(command, self.dt)
        self._steps += 1
        self.time = self._steps * self.dt
        q_true = self.plant.q
        q_ref_next, _, _ = self.trajectory.sample(self.time)
        err = q_ref_next - q_true
        tracking_cost = float(np.sum(err ** 2)) / self.error_scale ** 2
        action_cost = self.action_weight * float(np.sum(unit ** 2))
        reward = -tracking_cost - action_cost
        terminated = bool(not np.all(np.isfinite(q_true)) or np.any(q_true < self.q_lower)
                          or np.any(q_true > self.q_upper))
        if terminated:
            reward -= 100.0
            obs = self.obs.copy()
        else:
            obs = self._observe()
        truncated = self._steps >= self.episode_steps
        info = {"error": err, "tracking_cost": tracking_cost, "command": command,
                "applied_residual": applied, "a_base": self.a_base}
        return obs, float(reward), terminated, truncated, info


def make_env_from_config(env_cfg: EnvConfig | Mapping[str, Any] | None, params_file: str,
                         seed: int | None = None, **overrides) -> ResidualEnv:
    """Build a ResidualEnv from the ``env`` section of a training config."""
    kw = dataclasses.asdict(env_cfg) if isinstance(env_cfg, EnvConfig) else dict(env_cfg or {})
    kw.update(overrides)
    return ResidualEnv(params_file, seed=seed, **kw)
