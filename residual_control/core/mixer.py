"""The residual mixer: a = clip(a_base + g * clip(da, -eps, eps), cmd_min, cmd_max).

Pure numpy, no ROS, time passed in (seconds on the caller's clock). Joints are
matched by name, never by position. A fallback state machine decides the gain
g applied to the residual:

* FALLBACK   -- the residual is unhealthy (or never seen): a = clip(a_base + d),
                where the applied residual d decays linearly from its last
                applied (valid) value to zero over ``fallback_ramp_time``
                (bumpless; 0 s: d = 0 at once). A rejected residual is never
                used: the decay starts from the last residual that was applied.
* RECOVERING -- healthy for ``recovery_hold_time`` and the decay over: g ramps
                from 0 to ``residual_gain`` over ``recovery_ramp_time``.
* NOMINAL    -- g = residual_gain.
* BASE_FAULT -- the base action is stale or invalid: ``base_stale_behavior``
                decides (``stop``: command nothing, ``zero``: clip(0),
                ``hold``: the last command that was sent, ``damp``: blend from
                the last command to clip(-damp_kd * qd + gravity(q)) of the
                latest joint state over ``fallback_ramp_time``, see
                :meth:`Mixer.update_state`; nothing before the first command).

Invariants (tested with hypothesis): every command returned is finite and
within [command_min, command_max]; whenever a_base lies within the limits,
|a - a_base| <= g * eps <= residual_gain * eps per joint, with the current
configuration; in a decay the applied residual changes by at most
g * eps * dt / fallback_ramp_time between two commands dt apart, in the
recovery ramp the gain by at most residual_gain * dt / recovery_ramp_time.
"""
from __future__ import annotations

import enum
import math
from dataclasses import MISSING, dataclass, field, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import ConfigError, describe
from .joints import match_joints
from .params import MIXER_PARAMS, default_of, joint_vector, spec_map


class Mode(str, enum.Enum):
    NOMINAL = "nominal"
    RECOVERING = "recovering"
    FALLBACK = "fallback"
    BASE_FAULT = "base_fault"


_SPEC = spec_map(MIXER_PARAMS)
BASE_STALE_BEHAVIORS = tuple(_SPEC["base_stale_behavior"].choices)
#: Longest bumpless fallback ramp (s): the decaying residual is still applied, so keep it short.
FALLBACK_RAMP_TIME_MAX = _SPEC["fallback_ramp_time"].max
#: The per-joint vectors: their values are robot-specific, so the dataclass gives them no default.
_VECTORS = ("residual_limit", "residual_limit_max", "command_min", "command_max")


def _default(name: str):
    return field(default=default_of(MIXER_PARAMS, name))


@dataclass(frozen=True)
class MixerConfig:
    """The mixer's configuration.

    Defaults and per-value checks are the specs' (core.params.MIXER_PARAMS); :meth:`validate` adds the
    checks of relations between fields.

    ``damp_kd`` None: no damping gains (zeros). :meth:`from_params` fills every missing key from the
    specs' defaults, as a node declaring its parameters does.
    """

    joints: tuple[str, ...]
    residual_limit: np.ndarray
    residual_limit_max: np.ndarray
    command_min: np.ndarray
    command_max: np.ndarray
    residual_gain: float = _default("residual_gain")
    residual_timeout: float = _default("residual_timeout")
    observation_timeout: float = _default("observation_timeout")
    base_timeout: float = _default("base_timeout")
    recovery_hold_time: float = _default("recovery_hold_time")
    recovery_ramp_time: float = _default("recovery_ramp_time")
    base_stale_behavior: str = _default("base_stale_behavior")
    fallback_ramp_time: float = _default("fallback_ramp_time")
    damp_kd: np.ndarray | None = None  # None: zeros

    def __post_init__(self) -> None:
        object.__setattr__(self, "joints", tuple(self.joints))
        self.validate()

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> "MixerConfig":
        """Return a config from node parameters (other keys ignored).

        A missing key takes its spec's default, and a missing robot-specific one (joints, the per-joint
        limits: no default) is refused.
        """
        fields = cls.__dataclass_fields__
        missing = [name for name, f in fields.items() if name not in params and f.default is MISSING]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: expected a value from the robot's params file "
                              f"(robot-specific, no default), found none")
        return cls(**{name: params[name] for name in fields if name in params})

    def validate(self) -> None:
        """Each field against its spec (type, range, choices), then the relations between fields.

        The per-joint vectors are stored as read-only float arrays of one value per joint.
        """
        n = len(_SPEC["joints"].validate(list(self.joints), where="joints"))
        kd = np.zeros(n) if self.damp_kd is None else self.damp_kd
        for name, value in [*((v, getattr(self, v)) for v in _VECTORS), ("damp_kd", kd)]:
            arr = _as_vector(name, value, n)
            _SPEC[name].validate(arr.tolist(), where=name)
            object.__setattr__(self, name, arr)
        for name in ("residual_gain", "residual_timeout", "observation_timeout", "base_timeout",
                     "recovery_hold_time", "recovery_ramp_time", "base_stale_behavior", "fallback_ramp_time"):
            object.__setattr__(self, name, _SPEC[name].validate(getattr(self, name), where=name))
        # Relations between fields.
        if np.any(self.residual_limit > self.residual_limit_max):
            raise ConfigError(
                f"residual_limit: expected values <= residual_limit_max {self.residual_limit_max.tolist()},"
                f" found {self.residual_limit.tolist()}")
        if np.any(self.command_min > self.command_max):
            raise ConfigError(
                f"command_min/command_max: expected command_min <= command_max per joint, found "
                f"{self.command_min.tolist()} and {self.command_max.tolist()}")

    def with_changes(self, **changes) -> "MixerConfig":
        """Return a validated copy; raises ConfigError and changes nothing on bad values."""
        if "joints" in changes and tuple(changes["joints"]) != self.joints:
            raise ConfigError(f"joints: read-only while running: expected {list(self.joints)}, "
                              f"found {describe(changes['joints'])}")
        if "residual_limit_max" in changes:
            raise ConfigError(
                f"residual_limit_max: read-only while running: expected {self.residual_limit_max.tolist()}, "
                f"found {describe(changes['residual_limit_max'])}")
        return replace(self, **changes)


def _as_vector(name: str, value, n: int) -> np.ndarray:
    arr = joint_vector(name, value, n)
    arr.setflags(write=False)
    return arr


@dataclass
class MixOutput:
    """Result of one mixer step."""

    command: np.ndarray | None  # None: publish nothing (stop; damp before any command was sent)
    base: np.ndarray | None
    applied_residual: np.ndarray  # a - a_base before the command clip (g * clip(da))
    mode: Mode
    reason: str
    gain: float
    residual_clamped: bool = False
    transition: bool = False
    # Leaving a base fault: the command is resume_weight * (the stale-behaviour command sent last)
    # + (1 - resume_weight) * clip(base + applied_residual), the weight falling from 1 to 0 over
    # fallback_ramp_time (0: the mixed command alone).
    resume_weight: float = 0.0


@dataclass
class MixerStats:
    steps: int = 0
    clamped_steps: int = 0
    fallback_count: int = 0
    rejected_residuals: int = 0
    rejected_bases: int = 0
    last_rejection: str = ""

    @property
    def clamped_share(self) -> float:
        return self.clamped_steps / self.steps if self.steps else 0.0


@dataclass
class _Residual:
    values: np.ndarray
    stamp: float
    received: float


@dataclass
class _State:
    q: np.ndarray
    qd: np.ndarray
    received: float


@dataclass
class _Blend:
    """A linear blend that started at ``start`` from ``origin`` (a residual or a command).

    ``duration``: the fallback_ramp_time in force when it started. A blend in progress keeps it: a
    live change of the ramp time applies from the next blend on (a shorter one would cut the blend
    short, a longer one would bring back part of what had already faded: either a step).
    """

    origin: np.ndarray
    start: float
    duration: float

    def weight(self, now: float) -> float:
        """Share of the origin left at ``now``: 1 at the start, 0 after ``duration``."""
        if self.duration <= 0.0:
            return 0.0
        return min(max(1.0 - (now - self.start) / self.duration, 0.0), 1.0)


Gravity = Callable[[np.ndarray], np.ndarray]


def gravity_model(model, n_joints: int) -> Gravity:
    """gravity(q) of the nominal model (the pd_gravity base's), checked against the mixer's joint count."""
    if model is None:
        raise ConfigError("damp_gravity: expected a nominal model (the robot's description), found none")
    if model.dof != n_joints:
        raise ConfigError(f"model: expected {n_joints} joints (one per joint) for damp_gravity, "
                          f"found {model.dof}")
    return model.gravity_torque


def mixer_from_params(params: Mapping[str, object], model=None) -> "Mixer":
    """Return a Mixer from node parameters: MixerConfig fields and ``damp_gravity`` with the nominal ``model``.

    ``model`` (a :class:`residual_control.core.dynamics.NominalModel`) is needed only with damp_gravity;
    the nodes build it from the ``robot`` parameter (:func:`residual_control.robot.nominal.nominal_model`).
    """
    cfg = MixerConfig.from_params(params)
    damp_gravity = params.get("damp_gravity", default_of(MIXER_PARAMS, "damp_gravity"))
    gravity = gravity_model(model, len(cfg.joints)) if damp_gravity else None
    return Mixer(cfg, gravity)


class Mixer:
    """Sums, clamps and falls back. Not thread-safe: call from one thread.

    ``gravity``: gravity(q) torques for ``base_stale_behavior: damp`` (None: no
    gravity compensation, damping alone).
    """

    def __init__(self, config: MixerConfig, gravity: Gravity | None = None) -> None:
        self._config = config
        self._gravity = gravity
        self._index = {name: i for i, name in enumerate(config.joints)}
        self._perm_cache: dict[tuple, np.ndarray] = {}  # validated name order -> position of each joint (core.joints)
        self._residual: _Residual | None = None
        self._residual_error = "no residual received yet"
        self._mode = Mode.FALLBACK
        self._reason = self._residual_error
        self._healthy_since: float | None = None
        self._ramp_start: float | None = None
        self._ramp_time = 0.0  # recovery_ramp_time in force when the running recovery ramp started
        self._last_now: float | None = None
        self._first_now: float | None = None
        self._last_base_received: float | None = None
        self._last_command: np.ndarray | None = None  # last command mixed from a base action
        self._last_output: np.ndarray | None = None  # last command returned, whatever the mode
        self._last_applied = np.zeros(len(config.joints))  # applied residual of the last mixed command
        self._decay: _Blend | None = None  # the residual decaying in FALLBACK
        self._stop_blend: _Blend | None = None  # BASE_FAULT damp: from the last command to the damp target
        self._resume: _Blend | None = None  # leaving BASE_FAULT: from the last stale-behaviour command to the mix
        self._state: _State | None = None
        self._unreported: Mode | None = None  # the mode last reported, when check_base changed it silently
        self.stats = MixerStats()

    # ------------------------------------------------------------------ config
    @property
    def config(self) -> MixerConfig:
        return self._config

    @property
    def has_gravity(self) -> bool:
        return self._gravity is not None

    def reconfigure(self, **changes) -> MixerConfig:
        """Apply a live parameter change; raises ConfigError and keeps the old config on bad input.

        A residual decaying in FALLBACK is clipped to the new g * eps for good,
        so it never grows back when the bound is raised again.
        """
        self._config = cfg = self._config.with_changes(**changes)
        bound = cfg.residual_gain * cfg.residual_limit
        if self._decay is not None:
            self._decay = _Blend(np.clip(self._decay.origin, -bound, bound), self._decay.start, self._decay.duration)
        # ... and so is the reference a later fallback decays from.
        self._last_applied = np.clip(self._last_applied, -bound, bound)
        return cfg

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def reason(self) -> str:
        return self._reason

    def residual_age(self, now: float) -> float | None:
        return None if self._residual is None else now - self._residual.received

    def state_age(self, now: float) -> float | None:
        """Seconds since the latest valid joint state (None: never received)."""
        return None if self._state is None else now - self._state.received

    # ------------------------------------------------------------------ inputs
    def _order(self, names: Sequence[str], values: Sequence[float], what: str) -> tuple[np.ndarray | None, str]:
        """Reorder values by joint name. Returns (vector, '') or (None, reason)."""
        return match_joints(self._config.joints, names, values, what, index=self._index, cache=self._perm_cache)

    def update_residual(self, names: Sequence[str], values: Sequence[float], stamp: float, now: float) -> str:
        """Store a residual. Returns '' when accepted, else the reason it was rejected.

        A rejected residual makes the residual unhealthy until a valid one arrives.
        """
        vec, err = self._order(names, values, "residual")
        if vec is None:
            self._residual = None
            self._residual_error = err
            self.stats.rejected_residuals += 1
            self.stats.last_rejection = err
            return err
        if not math.isfinite(stamp):
            err = f"residual: expected a finite stamp, found {stamp}"
            self._residual, self._residual_error = None, err
            self.stats.rejected_residuals += 1
            self.stats.last_rejection = err
            return err
        self._residual = _Residual(vec, float(stamp), float(now))
        self._residual_error = ""
        return ""

    def _residual_health(self, now: float) -> str:
        """'' when healthy, else why not."""
        cfg = self._config
        r = self._residual
        if r is None:
            return self._residual_error or "no residual received yet"
        age = now - r.received
        if age > cfg.residual_timeout:
            return f"residual stale: received {age:.3f} s ago (residual_timeout {cfg.residual_timeout:g} s)"
        obs_age = now - r.stamp
        if obs_age > cfg.observation_timeout:
            return (f"observation stale: residual computed from an observation {obs_age:.3f} s old "
                    f"(observation_timeout {cfg.observation_timeout:g} s)")
        if obs_age < -cfg.observation_timeout:
            return f"residual stamp {-obs_age:.3f} s in the future"
        return ""

    def update_state(self, names: Sequence[str], q: Sequence[float], qd: Sequence[float], now: float) -> str:
        """Store the latest joint state (for ``damp``). Returns '' when accepted, else why not."""
        pos, err = self._order(names, q, "joint_states.position")
        if pos is None:
            return err
        vel, err = self._order(names, qd, "joint_states.velocity")
        if vel is None:
            return err
        self._state = _State(pos, vel, float(now))
        return ""

    # ------------------------------------------------------------------ step
    def step(self, base_names: Sequence[str], base_values: Sequence[float], base_stamp: float,
             now: float) -> MixOutput:
        """Mix one base action received at ``now`` (stamped ``base_stamp``)."""
        cfg = self._config
        previous = self._mode  # before a clock jump, which may change the mode too
        self._check_clock(now)
        base, err = self._order(base_names, base_values, "base action")
        if base is None:
            self.stats.rejected_bases += 1
            self.stats.last_rejection = err
            return self._base_fault(err, now, previous)
        if not math.isfinite(base_stamp):
            return self._base_fault(f"base action: expected a finite stamp, found {base_stamp}", now, previous)
        if now - base_stamp > cfg.base_timeout:
            return self._base_fault(
                f"base action stale: stamp {now - base_stamp:.3f} s old (base_timeout {cfg.base_timeout:g} s)",
                now, previous)
        if base_stamp - now > cfg.base_timeout:
            return self._base_fault(f"base action stamp {base_stamp - now:.3f} s in the future", now, previous)
        self._last_base_received = now
        self._stop_blend = None
        if self._mode == Mode.BASE_FAULT and cfg.base_stale_behavior != "stop" and self._last_command is not None:
            # Bumpless resume: the sink holds the last zero/hold/damp command; the mix takes over
            # from it over fallback_ramp_time. (With stop, the sink's own timeout decided what the
            # actuator did meanwhile: no command of ours to start from. Before the first base action
            # ever mixed, the stale output stood in for a controller that had not started: the base
            # controller's first action is applied as it is.)
            self._resume = _Blend(np.array(self._last_output, dtype=float), now, cfg.fallback_ramp_time)

        health = self._residual_health(now)
        if health:
            self._healthy_since = None
            self._ramp_start = None
            self._set_mode(Mode.FALLBACK, health, now)
        else:
            if self._mode in (Mode.FALLBACK, Mode.BASE_FAULT):
                if self._healthy_since is None:
                    self._healthy_since = now
                decaying = self._decay is not None and self._decay.weight(now) > 0.0
                if now - self._healthy_since >= cfg.recovery_hold_time and not decaying:
                    self._ramp_start = now
                    self._ramp_time = float(cfg.recovery_ramp_time)
                    self._set_mode(Mode.RECOVERING, "residual healthy: ramping in", now)
                elif decaying:
                    self._set_mode(Mode.FALLBACK, "residual healthy: holding until the fallback ramp ends", now)
                else:
                    self._set_mode(Mode.FALLBACK, "residual healthy: holding before recovery", now)
            if self._mode == Mode.RECOVERING:
                assert self._ramp_start is not None
                if self._ramp_time <= 0 or now - self._ramp_start >= self._ramp_time:
                    self._set_mode(Mode.NOMINAL, "residual healthy", now)
        gain = self._gain(now)
        eps = cfg.residual_limit
        clamped = False
        if gain > 0.0 and self._residual is not None:
            raw = self._residual.values
            clipped = np.clip(raw, -eps, eps)
            clamped = bool(np.any(clipped != raw))
            applied = gain * clipped
        else:
            applied = self._decayed(now)
        command = np.clip(base + applied, cfg.command_min, cfg.command_max)
        resume_weight = 0.0
        if self._resume is not None:
            resume_weight = self._resume.weight(now)
            if resume_weight > 0.0:
                command = np.clip(resume_weight * self._resume.origin + (1.0 - resume_weight) * command,
                                  cfg.command_min, cfg.command_max)
            else:
                self._resume = None
        self.stats.steps += 1
        self.stats.clamped_steps += int(clamped)
        self._last_command = command
        self._last_output = command
        self._last_applied = applied
        return MixOutput(command, base, applied, self._mode, self._reason, gain, clamped,
                         transition=self._reported_transition(previous), resume_weight=resume_weight)

    def _reported_transition(self, previous: Mode) -> bool:
        """Whether the mode changed since ``previous`` or since the last output (a change check_base found)."""
        before = previous if self._unreported is None else self._unreported
        self._unreported = None
        return self._mode != before

    def _decayed(self, now: float) -> np.ndarray:
        """Return the decaying residual of a bumpless fallback (zeros when none).

        It is within g * eps of the current config.
        """
        cfg = self._config
        n = len(cfg.joints)
        if self._decay is None:
            return np.zeros(n)
        w = self._decay.weight(now)
        if w <= 0.0:
            self._decay = None
            return np.zeros(n)
        bound = cfg.residual_gain * cfg.residual_limit
        return w * np.clip(self._decay.origin, -bound, bound)

    def check_base(self, now: float) -> MixOutput | None:
        """Call periodically: returns the safe output when no base action came within base_timeout.

        A mode change it finds on its way (a clock jump) and does not output is reported by the next
        output's ``transition``.
        """
        previous = self._mode
        self._check_clock(now)
        last = self._last_base_received
        since = last if last is not None else self._first_now
        if since is not None and now - since <= self._config.base_timeout:
            if self._mode != previous:
                self._unreported = previous if self._unreported is None else self._unreported
            return None
        age = "never received" if last is None else f"last received {now - last:.3f} s ago"
        return self._base_fault(f"base action stale: {age} (base_timeout {self._config.base_timeout:g} s)", now,
                                previous)

    def _check_clock(self, now: float) -> None:
        if self._first_now is None:
            self._first_now = now
        if self._last_now is not None and now < self._last_now:
            # The clock jumped backwards (sim reset, bag loop): every stored
            # receipt time is in the future now. Forget them, start over; a
            # blend in progress goes on from where it was, restarted at now.
            dt = self._last_now - now
            if self._decay is not None:
                w = self._decay.weight(self._last_now)
                self._decay = _Blend(w * self._decay.origin, now, self._decay.duration) if w > 0.0 else None
            if self._stop_blend is not None and self._last_output is not None:
                self._stop_blend = _Blend(self._last_output.copy(), now, self._stop_blend.duration)
            if self._resume is not None:
                going = self._resume.weight(self._last_now) > 0.0
                self._resume = _Blend(self._last_output.copy(), now, self._resume.duration) if going else None
            self._residual = None
            self._residual_error = f"clock jumped back by {dt:.3f} s"
            self._last_base_received = None
            self._state = None
            self._first_now = now
            self._healthy_since = None
            self._ramp_start = None
            # A base fault lasts until a fresh base action arrives (and the mix resumes from the
            # stale-behaviour command, ramped); otherwise the residual is unhealthy from here.
            mode = Mode.BASE_FAULT if self._mode == Mode.BASE_FAULT else Mode.FALLBACK
            self._set_mode(mode, self._residual_error, now)
        self._last_now = now

    def _base_fault(self, reason: str, now: float, previous: Mode) -> MixOutput:
        cfg = self._config
        self._healthy_since = None
        self._ramp_start = None
        self._set_mode(Mode.BASE_FAULT, reason, now)
        n = len(cfg.joints)
        zeros = np.zeros(n)
        # The residual needs a base to be added to: none is applied from here on.
        self._decay = None
        self._resume = None
        self._last_applied = zeros
        behavior = cfg.base_stale_behavior
        if behavior != "damp":
            self._stop_blend = None
        if behavior == "stop":
            command = None
        elif behavior == "zero":
            command = np.clip(zeros, cfg.command_min, cfg.command_max)
        elif behavior == "hold":
            held = self._last_command if self._last_command is not None else zeros
            command = np.clip(held, cfg.command_min, cfg.command_max)
        elif self._last_output is None:
            # damp replaces the last command a sink would hold; none was ever sent: send none.
            command = None
        else:  # damp
            target = self.damp_target(now)
            if self._stop_blend is None:
                self._stop_blend = _Blend(np.array(self._last_output, dtype=float), now, cfg.fallback_ramp_time)
            w = self._stop_blend.weight(now)
            command = np.clip(w * self._stop_blend.origin + (1.0 - w) * target, cfg.command_min, cfg.command_max)
            age = self.state_age(now)
            if age is None:
                reason += "; damp: no joint state received, ramping to clip(0)"
                self._reason = reason
            elif age > cfg.base_timeout:
                reason += (f"; damp: joint state {age:.3f} s old, its damping fading out, holding gravity at "
                           "its position")
                self._reason = reason
        if command is not None:
            self._last_output = command
        return MixOutput(command, None, zeros, self._mode, reason, 0.0, False,
                         transition=self._reported_transition(previous))

    def damp_target(self, now: float) -> np.ndarray:
        """clip(-damp_kd * qd + gravity(q)) of the latest joint state.

        A joint state older than ``base_timeout`` gives no velocity to damp: its damping term fades
        out over the next ``fallback_ramp_time`` (no step), leaving gravity(q) alone at its q.
        None ever received: clip(0).
        """
        cfg = self._config
        n = len(cfg.joints)
        st = self._state
        if st is None:
            return np.clip(np.zeros(n), cfg.command_min, cfg.command_max)
        late = now - st.received - cfg.base_timeout
        share = 1.0 if late <= 0.0 else (
            max(1.0 - late / cfg.fallback_ramp_time, 0.0) if cfg.fallback_ramp_time > 0.0 else 0.0)
        tau = -cfg.damp_kd * st.qd * share
        if self._gravity is not None:
            g = np.asarray(self._gravity(st.q), dtype=float)
            if g.shape == (n,) and np.isfinite(g).all():
                tau = tau + g
        return np.clip(tau, cfg.command_min, cfg.command_max)

    def _set_mode(self, mode: Mode, reason: str, now: float) -> None:
        if mode in (Mode.FALLBACK, Mode.BASE_FAULT) and self._mode in (Mode.NOMINAL, Mode.RECOVERING):
            self.stats.fallback_count += 1
            if mode == Mode.FALLBACK:
                # Bumpless: the residual applied last decays from where it was.
                # Its origin is kept within the current g * eps (as reconfigure keeps it), so
                # scaling it on a clock jump can never make it grow.
                bound = self._config.residual_gain * self._config.residual_limit
                origin = np.clip(self._last_applied, -bound, bound)
                self._decay = _Blend(origin, now, self._config.fallback_ramp_time) if np.any(origin) else None
        if mode in (Mode.NOMINAL, Mode.RECOVERING):
            self._decay = None
        self._mode = mode
        self._reason = reason

    def _gain(self, now: float) -> float:
        cfg = self._config
        if self._mode == Mode.NOMINAL:
            return float(cfg.residual_gain)
        if self._mode == Mode.RECOVERING and self._ramp_start is not None and self._ramp_time > 0:
            frac = min(max((now - self._ramp_start) / self._ramp_time, 0.0), 1.0)
            return float(cfg.residual_gain) * frac
        return 0.0


def residual_bound_ok(command: np.ndarray, base: np.ndarray, config: MixerConfig, tol: float = 1e-9) -> bool:
    """Check the safety invariant, usable by tests and monitors alike."""
    if command is None:
        return True
    if not np.isfinite(command).all():
        return False
    if np.any(command < config.command_min - tol) or np.any(command > config.command_max + tol):
        return False
    inside = (base >= config.command_min) & (base <= config.command_max)
    bound = config.residual_gain * config.residual_limit + tol
    return bool(np.all(np.abs(command - base)[inside] <= bound[inside]))


__all__ = ["Mixer", "MixerConfig", "MixOutput", "MixerStats", "Mode", "residual_bound_ok",
           "BASE_STALE_BEHAVIORS", "FALLBACK_RAMP_TIME_MAX", "gravity_model", "mixer_from_params"]
