"""The closed loop in simulation: MuJoCo plant + reference + perception + the runtime graph.

Every node runs as its own process over DDS, on simulated time published by
``mujoco_sim`` in lockstep capped at real time: timeouts mean what they mean
on a robot while the machine keeps up, and a loaded machine slows the
simulation down instead of starving the controllers.
The sim starts last, once the probe has discovered every other node, so each
trial begins from the same state on the same trajectory.

:class:`LoopRun` records a trial; :func:`analyse` turns it into the numbers
the demo, the fault matrix and the tests report: tracking RMSE against the
reference, residual size, time in fallback and safety violations, checked on
every command the actuator side received.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import rclpy
import yaml
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState

from ..core.mixer import MixerConfig
from ..paths import default_params_file, share_path
from .graph import Graph, NodeSpec
from .probe import RECORD_QOS, Probe, Sample


def load_params(path: str | Path | None = None) -> dict:
    with open(path or default_params_file()) as f:
        return yaml.safe_load(f)


def node_params(params: Mapping, node: str) -> dict:
    """Parameters a node gets from a params file: ``/**`` merged with its own section."""
    out = dict(params.get("/**", {}).get("ros__parameters", {}))
    out.update(params.get(node, {}).get("ros__parameters", {}))
    return out


def mixer_config(params: Mapping) -> MixerConfig:
    return MixerConfig.from_params(node_params(params, "residual_mixer"))


@dataclass
class LoopSettings:
    params_file: str
    plant_file: str
    model_path: str = ""
    reference_file: str = ""
    settle: float = 5.0  # sim seconds before the measured window: start-up (discovery, first calls)
    duration: float = 10.0  # sim seconds measured
    control_rate_hz: float = 100.0
    initial_positions: Sequence[float] = (0.3, 1.2)
    seed: int = 0
    log_dir: str | None = None
    residual_gain: float | None = None  # override (0 = base alone)
    startup_timeout: float = 60.0
    # Lockstep on simulated time, never faster than this many sim seconds per
    # wall second: real time while the graph keeps up, slower (not starved)
    # when the machine is loaded. 0 = as fast as the graph answers.
    real_time_factor: float = 1.0


@dataclass
class LoopRun:
    """What the probe saw during one trial."""

    probe: Probe
    graph: Graph
    settings: LoopSettings
    events: list = field(default_factory=list)  # (wall monotonic, sim time, label)
    references: list = field(default_factory=list)

    def sim_time(self) -> float:
        return self.probe.ros_now()

    def mark(self, label: str) -> None:
        self.events.append((time.monotonic(), self.sim_time(), label))


def graph_specs(s: LoopSettings) -> dict[str, NodeSpec]:
    """Every node of the loop but the sim, on simulated time."""
    ref_file = s.reference_file or str(share_path("config", "reference.yaml"))
    sim_time = {"use_sim_time": True}
    policy = dict(sim_time)
    if s.model_path:
        policy["model_path"] = s.model_path
    mixer = dict(sim_time)
    if s.residual_gain is not None:
        mixer["residual_gain"] = float(s.residual_gain)
    specs = [
        NodeSpec("base_controller", [s.params_file], sim_time),
        NodeSpec("residual_policy", [s.params_file], policy),
        NodeSpec("residual_mixer", [s.params_file], mixer),
        NodeSpec("perception", [], {**sim_time, "plant_file": s.plant_file, "seed": s.seed}),
        NodeSpec("reference_publisher", [ref_file], sim_time),
    ]
    return {spec.executable: spec for spec in specs}


def _sim_spec(s: LoopSettings) -> NodeSpec:
    return NodeSpec("mujoco_sim", [], {
        "plant_file": s.plant_file, "mode": "lockstep", "publish_clock": True,
        "real_time_factor": s.real_time_factor,
        "control_rate_hz": s.control_rate_hz, "initial_positions": list(s.initial_positions),
        "seed": s.seed,
    })


class ClosedLoop:
    """Context manager running one trial; ``run(on_tick)`` drives it to the end of the window."""

    def __init__(self, settings: LoopSettings, joints: Sequence[str], name: str = "loop_probe",
                 progress: Callable[[str], None] | None = None) -> None:
        self.s = settings
        self.joints = list(joints)
        self.progress = progress or (lambda _msg: None)
        if not rclpy.ok():
            rclpy.init()
            self._owns_rclpy = True
        else:
            self._owns_rclpy = False
        self.probe = Probe(self.joints, name=name, record_joint_states=True,
                           parameter_overrides=[Parameter("use_sim_time", value=True)])
        self._refs: list = []
        self.probe.create_subscription(JointState, "reference", self._on_reference, RECORD_QOS)
        self.specs = graph_specs(settings)
        self.graph = Graph(list(self.specs.values()), log_dir=settings.log_dir)
        self._killed: set = set()
        self.run_data = LoopRun(self.probe, self.graph, settings, references=self._refs)

    def _on_reference(self, msg: JointState) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        idx = [list(msg.name).index(j) for j in self.joints]
        self._refs.append((stamp, np.asarray(msg.position, dtype=float)[idx]))

    def __enter__(self) -> "ClosedLoop":
        return self

    def __exit__(self, *exc) -> None:
        self.graph.stop()
        self.probe.destroy_node()
        if self._owns_rclpy:
            rclpy.try_shutdown()

    def wait_ready(self) -> None:
        """Wait for every node's outputs to be discoverable, then start the sim."""
        topics = ["base_action", "residual_action", "commands", "perception", "reference"]
        p = self.probe

        def ready() -> bool:
            self.graph.check_alive()
            return all(p.count_publishers(t) > 0 for t in topics)

        if not p.spin_until(ready, self.s.startup_timeout):
            missing = [t for t in topics if p.count_publishers(t) == 0]
            raise RuntimeError(f"graph not ready after {self.s.startup_timeout} s: no publisher on {missing}")
        self.graph.start(_sim_spec(self.s))

    def run(self, on_tick: Callable[[float], None] | None = None) -> LoopRun:
        """Spin until the sim time passes settle + duration; ``on_tick(sim_time)`` runs each spin."""
        self.wait_ready()
        end = self.s.settle + self.s.duration
        p = self.probe
        last_report = -1.0
        wall_limit = time.monotonic() + self.s.startup_timeout + 10 * end
        while True:
            rclpy.spin_once(p, timeout_sec=0.005)
            t = p.ros_now()
            if on_tick is not None:
                on_tick(t)
            if t >= end:
                break
            if t - last_report >= 2.0:
                last_report = t
                self.progress(f"{t:5.1f}/{end:.1f} s sim time, mode {p.mode or '?'}")
                self.graph.check_alive(ignore=self._killed)
            if time.monotonic() > wall_limit:
                raise RuntimeError(f"trial did not reach sim time {end} s in time (at {t:.2f} s)")
        return self.run_data

    def sim_time_now(self) -> float:
        """Simulated time now, to a fraction of a control period.

        The probe's ROS clock only moves when a /clock message is handled, so
        it can be one step stale. The latest joint state's stamp plus the wall
        time since it arrived (at most one period: the sim is capped at real
        time) is the better estimate.
        """
        self.probe.drain()
        period = 1.0 / self.s.control_rate_hz
        js = self.probe.rec.joint_states
        if not js:
            return self.probe.ros_now()
        return js[-1].stamp + min(max(time.monotonic() - js[-1].t, 0.0), period)

    def kill(self, node: str) -> None:
        """kill -9 a node of the graph; the loop keeps running without it."""
        self._killed.add(node)
        self.run_data.mark(f"killed:{node}")
        self.graph[node].kill9()

    def restart(self, node: str) -> None:
        self.graph.start(self.specs[node])
        self._killed.discard(node)
        self.run_data.mark(f"restarted:{node}")


# ---------------------------------------------------------------------- analysis
def _interp_reference(refs: list, t: np.ndarray) -> np.ndarray:
    stamps = np.array([r[0] for r in refs])
    values = np.stack([r[1] for r in refs])
    order = np.argsort(stamps)
    stamps, values = stamps[order], values[order]
    return np.stack([np.interp(t, stamps, values[:, j]) for j in range(values.shape[1])], axis=1)


CHECK_WINDOW = 0.1  # s of probe receive time around a command in which its base action must lie


def check_commands(commands, bases, joints, config, behaviour: str = "stop", window: float = CHECK_WINDOW,
                 kinds: list | None = None, blind: Sequence[tuple[float, float]] = (),
                 applied: Sequence = ()) -> dict:
    """Check every command (see the module doc). Returns counts and a few examples.

    ``kinds``, when given, receives one entry per command: None (safe) or the violation kind.
    ``blind``: (t0, t1) intervals of probe time in which the recorder cannot see base actions
    (a restarted base_controller not yet discovered by the probe while the mixer already has it):
    commands in them are checked for finiteness and limits only (counted as before_first_base).
    ``applied``: the mixer's applied residuals (stamped with their base action's stamp). A command
    with no recorded base action near it, next to an applied residual whose base action the
    recorder demonstrably dropped (its stamp is not among the recorded ones: a loaded recorder
    misses samples of a depth-1 publisher), is counted as ``unverifiable_dropped`` when that
    applied residual is within g * eps, instead of as a violation.
    """
    lo, hi = config.command_min, config.command_max
    bound = config.residual_gain * config.residual_limit + 1e-6
    base_t = np.array([b.t for b in bases]) if bases else np.zeros(0)
    base_v = [b.values[[b.names.index(j) for j in joints]]
              if set(joints) <= set(b.names) and len(b.names) == len(b.values) else None for b in bases]
    counts = {"non_finite": 0, "out_of_limits": 0, "residual_bound": 0, "unbased": 0}
    # Before the recorder's base_action subscription has delivered anything (discovery at start-up),
    # a command's base action cannot be known: those are checked for finiteness and limits only.
    first_base = base_t[0] if base_t.size else math.inf
    counts["before_first_base"] = 0
    counts["unverifiable_dropped"] = 0
    base_stamps = {round(b.stamp, 6) for b in bases if b.stamp is not None}
    app = sorted((a for a in applied if a.stamp is not None and round(a.stamp, 6) not in base_stamps),
                 key=lambda a: a.t)
    app_t = np.array([a.t for a in app])
    stamps = np.array(sorted(b.stamp for b in bases if b.stamp is not None))
    base_period = float(np.median(np.diff(stamps))) if stamps.size > 2 else 0.0
    examples = []
    previous = None
    for c in commands:
        v = c.values
        kind = None
        if v.shape != lo.shape or not np.all(np.isfinite(v)):
            kind = "non_finite"
        elif np.any(v < lo - 1e-9) or np.any(v > hi + 1e-9):
            kind = "out_of_limits"
        elif c.t < first_base or any(t0 <= c.t <= t1 for t0, t1 in blind):
            counts["before_first_base"] += 1
        else:
            i0 = np.searchsorted(base_t, c.t - window, side="left")
            i1 = np.searchsorted(base_t, c.t + window, side="right")
            mid = int(np.searchsorted(base_t, c.t))
            # Nearest first (before, then after, alternating): the match is usually the first tried.
            order = [k for pair in zip(range(mid - 1, i0 - 1, -1), range(mid, i1)) for k in pair]
            order += list(range(mid - 1 - len(order) // 2, i0 - 1, -1)) + list(range(mid + len(order) // 2, i1))
            near = [base_v[k] for k in order if base_v[k] is not None and np.all(np.isfinite(base_v[k]))]
            ok = False
            for b in near:
                inside = (b >= lo) & (b <= hi)
                if np.all(np.abs(v - b)[inside] <= bound[inside]):
                    ok = True
                    break
            if not ok:
                # No base action it can come from: only the documented base_stale_behavior.
                if behaviour == "zero":
                    ok = bool(np.allclose(v, np.clip(np.zeros_like(v), lo, hi), atol=1e-9))
                elif behaviour == "hold":
                    held = previous if previous is not None else np.zeros_like(v)
                    ok = bool(np.allclose(v, held, atol=1e-9))
                kind = None if ok else ("residual_bound" if near else "unbased")
                if kind == "unbased" and app_t.size:
                    j0, j1 = np.searchsorted(app_t, c.t - window), np.searchsorted(app_t, c.t + window)
                    if any(app[k].values.shape == bound.shape and np.all(np.abs(app[k].values) <= bound)
                           for k in range(j0, j1)):
                        counts["unverifiable_dropped"] += 1
                        kind = None
                if kind == "unbased" and _recorder_dropped_bases(bases, base_t, c.t, window, base_period):
                    # The base action stream the recorder got has a hole here (a best-effort
                    # recorder drops samples; the base controller publishes one per period).
                    counts["unverifiable_dropped"] += 1
                    kind = None
        if kinds is not None:
            kinds.append(kind)
        if kind is not None:
            counts[kind] += 1
            if len(examples) < 5:
                examples.append({"t": round(c.t, 4), "kind": kind, "command": np.round(v, 4).tolist()})
        previous = v
    counts["total"] = sum(counts[k] for k in ("non_finite", "out_of_limits", "residual_bound", "unbased"))
    counts["commands"] = len(commands)
    counts["examples"] = examples
    return counts


def _recorder_dropped_bases(bases, base_t, t: float, window: float, period: float) -> bool:
    """Did the recorder miss base actions around receive time t (a gap of more than 1.5 periods in
    the stamps of the base actions it received just before and after)?"""
    if period <= 0.0 or not len(base_t):
        return False
    i = int(np.searchsorted(base_t, t))
    near = [b.stamp for b in bases[max(i - 3, 0):i + 3] if b.stamp is not None]
    near = sorted(near)
    return any(b - a > 1.5 * period for a, b in zip(near, near[1:])) or not near


def mode_intervals(mixer_modes: list, t_start: float, t_end: float) -> dict:
    """Seconds of sim time spent in each mixer mode within [t_start, t_end] (from diagnostics stamps)."""
    out: dict = {}
    seq = sorted(mixer_modes)
    current = None
    for t, m in seq:
        if t <= t_start:
            current = m
    edges = [(t_start, current)] + [(t, m) for t, m in seq if t_start < t < t_end] + [(t_end, None)]
    for (t0, m), (t1, _) in zip(edges, edges[1:]):
        if m is not None:
            out[m] = out.get(m, 0.0) + (t1 - t0)
    return out


def analyse(run: LoopRun, joints: Sequence[str], config: MixerConfig) -> dict:
    s = run.settings
    rec = run.probe.rec
    t0, t1 = s.settle, s.settle + s.duration
    states = [js for js in rec.joint_states if t0 <= js.stamp <= t1]
    if not states or len(run.references) < 2:
        raise RuntimeError(f"no joint states or references recorded in the window [{t0}, {t1}] s")
    t = np.array([js.stamp for js in states])
    q = np.stack([_positions(js, joints) for js in states])
    q_ref = _interp_reference(run.references, t)
    err = q - q_ref
    rmse_joint = np.sqrt(np.mean(err ** 2, axis=0))
    applied = [a for a in rec.applied if t0 <= a.stamp <= t1]
    max_da = float(max((np.abs(a.values).max() for a in applied), default=0.0))
    commands = list(rec.commands)
    checks = check_commands(commands, rec.base, joints, config, config.base_stale_behavior,
                            applied=rec.applied)
    modes = mode_intervals(rec.mixer_modes, t0, t1)
    return {
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "rmse_per_joint": {j: float(r) for j, r in zip(joints, rmse_joint)},
        "max_abs_residual": max_da,
        "fallback_time_s": float(sum(v for k, v in modes.items() if k != "nominal")),
        "mode_time_s": modes,
        "violations": int(checks["total"]),
        "violation_breakdown": checks,
        "samples": int(len(states)),
        "window_s": [t0, t1],
    }


def _positions(js: Sample, joints: Sequence[str]) -> np.ndarray:
    return js.positions[[js.names.index(j) for j in joints]]


def series(run: LoopRun, joints: Sequence[str]) -> dict:
    """Time series for plots: t, q, q_ref, applied residual, mode."""
    rec = run.probe.rec
    t = np.array([js.stamp for js in rec.joint_states])
    q = np.stack([_positions(js, joints) for js in rec.joint_states]) if rec.joint_states else np.zeros((0, 2))
    q_ref = _interp_reference(run.references, t) if len(run.references) >= 2 else np.zeros_like(q)
    ta = np.array([a.stamp for a in rec.applied])
    da = np.stack([a.values for a in rec.applied]) if rec.applied else np.zeros((0, len(joints)))
    modes = sorted(rec.mixer_modes)
    return {"t": t, "q": q, "q_ref": q_ref, "t_applied": ta, "applied": da, "modes": modes}


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
