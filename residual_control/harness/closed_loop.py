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

import bisect
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import rclpy
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState

from .. import params_file
from ..core.joints import match_joints, order_by_name
from ..params_file import node_params
from ..core.mixer import MixerConfig
from ..paths import default_params_file, share_path
from .graph import Graph, NodeSpec
from .probe import RECORD_QOS, Probe, Sample


def load_params(path: str | Path | None = None) -> dict:
    """Return the loaded params file (the package's own when None)."""
    return params_file.load(path or default_params_file())


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
    initial_positions: Sequence[float] | None = None  # default: the robot's home
    seed: int = 0
    robot: str = ""  # robot folder or shipped name of the sim (default: the params file's robot)
    log_dir: str | None = None
    residual_gain: float | None = None  # override (0 = base alone)
    startup_timeout: float = 60.0
    # Lockstep on simulated time, never faster than this many sim seconds per
    # wall second: real time while the graph keeps up, slower (not starved)
    # when the machine is loaded. 0 = as fast as the graph answers.
    real_time_factor: float = 1.0
    # The sim's record of every command it received and every base action
    # (residual_control.sim.sink_record); empty: a temporary file.
    record_path: str = ""
    # A rosbag2 recording of the trial (residual_recorder) into this folder; empty: none.
    bag_path: str = ""
    bag_storage: str = "mcap"


@dataclass
class LoopRun:
    """What the probe saw during one trial."""

    probe: Probe
    graph: Graph
    settings: LoopSettings
    events: list = field(default_factory=list)  # (wall monotonic, sim time, label)
    references: list = field(default_factory=list)
    record_path: str = ""

    def sink_record(self, settled: bool = False):
        """Return what the actuator received, as the sim recorded it (exact; see check_sink_record).

        ``settled``: for the check while the sim runs, up to the window the record ends in once its
        base action has arrived (sim.sink_record.read_settled): not one in flight.
        """
        from ..sim.sink_record import read_record, read_settled

        return read_settled(self.record_path) if settled else read_record(self.record_path)

    def sim_time(self) -> float:
        return self.probe.ros_now()

    def mark(self, label: str) -> None:
        self.events.append((time.monotonic(), self.sim_time(), label))


def graph_specs(s: LoopSettings) -> dict[str, NodeSpec]:
    """Every node of the loop but the sim, on simulated time."""
    robot = settings_robot(s)
    ref_file = s.reference_file or str(robot.reference or share_path("config", "reference.yaml"))
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
    if s.bag_path:
        specs.append(recorder_spec(s.bag_path, s.params_file, s.model_path, use_sim_time=True,
                                   storage=s.bag_storage, robot=s.robot))
    return {spec.executable: spec for spec in specs}


def recorder_spec(out: str, params_file: str, model_path: str = "", *, use_sim_time: bool = False,
                  storage: str = "mcap", robot: str = "", namespace: str = "",
                  mixer_node: str = "residual_mixer", log_level: str = "info", remaps=None) -> NodeSpec:
    """Return the residual_recorder process writing the graph's topics into the bag ``out``.

    ``remaps``: the graph's own (``commands`` to a controller's topic): the recorder reads them there.
    """
    params = {"use_sim_time": use_sim_time, "out": str(out), "storage": storage, "params_file": str(params_file),
              "model_path": str(model_path or ""), "robot": str(robot or ""), "mixer_node": mixer_node}
    return NodeSpec("residual_recorder", [], params, dict(remaps or {}), namespace, log_level=log_level)


def settings_robot(s: LoopSettings):
    """Return the robot of a trial: ``s.robot``, else the params file's ``robot`` (default: the built-in arm)."""
    from ..robot.folder import load_robot

    if s.robot:
        return load_robot(s.robot)
    return load_robot(node_params(load_params(s.params_file), "base_controller").get("robot") or None)


def _sim_spec(s: LoopSettings) -> NodeSpec:
    robot = settings_robot(s)
    q0 = robot.home if s.initial_positions is None else s.initial_positions
    return NodeSpec("mujoco_sim", [], {
        "robot": str(robot.root),
        "plant_file": s.plant_file, "mode": "lockstep", "publish_clock": True,
        "real_time_factor": s.real_time_factor,
        "control_rate_hz": s.control_rate_hz, "initial_positions": [float(x) for x in q0],
        "seed": s.seed, "record_path": s.record_path, "record_applied_topic": "residual_mixer/applied_residual",
        # The simulated loop also waits for the policy's residual of each state (while it answers), so a
        # loaded machine slows the loop down instead of starving the policy (stale residuals).
        "lockstep_residual_topic": "residual_action",
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
        self._tmp = None
        if not settings.record_path and settings.log_dir:
            settings.record_path = str(Path(settings.log_dir) / "sink_record.txt")
        elif not settings.record_path:
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="residual_control_sink_")
            settings.record_path = str(Path(self._tmp.name) / "sink_record.txt")
        self.run_data = LoopRun(self.probe, self.graph, settings, references=self._refs,
                                record_path=settings.record_path)

    def _on_reference(self, msg: JointState) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self._refs.append((stamp, order_by_name(self.joints, msg.name, msg.position, "reference.position",
                                                finite=False)))

    def __enter__(self) -> "ClosedLoop":
        return self

    def __exit__(self, *exc) -> None:
        self.graph.stop()
        self.probe.destroy_node()
        if self._owns_rclpy:
            rclpy.try_shutdown()
        if self._tmp is not None:
            self._tmp.cleanup()

    def wait_ready(self) -> None:
        """Wait for every node's outputs to be discoverable, then start the sim."""
        topics = ["base_action", "residual_action", "commands", "perception", "reference"]
        p = self.probe

        recording = "residual_recorder" in self.specs

        def ready() -> bool:
            self.graph.check_alive()
            # With a recording, the sim starts once the recorder listens: the bag starts with the trial.
            return (all(p.count_publishers(t) > 0 for t in topics)
                    and (not recording or any(i.node_name == "residual_recorder" for i in
                                              p.get_subscriptions_info_by_topic(p.resolve_topic_name("commands")))))

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
        """Return the simulated time now, to a fraction of a control period.

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
        """Kill a node of the graph (kill -9); the loop keeps running without it."""
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


def _within(command, base, allowed, lo, hi) -> bool:
    """|command - base| <= allowed on every joint whose base action lies within the command limits."""
    inside = (base >= lo) & (base <= hi)
    return bool(np.all(np.abs(command - base)[inside] <= allowed[inside]))


def _resume_fits(command, base, bound, stale, first, lo, hi) -> bool:
    """Return whether a command fits the mixer's blend out of a stale period.

    It is within g * eps of the base action plus the larger gap of the last stale command ``stale``
    and of the resume's first command ``first`` to it.
    """
    return _within(command, base, bound + np.maximum(np.abs(stale - base), np.abs(first - base)), lo, hi)


CHECK_WINDOW = 0.1  # s of probe receive time around a command in which its base action must lie


def check_commands(commands, bases, joints, config, behaviour: str = "stop", window: float = CHECK_WINDOW,
                   kinds: list | None = None) -> dict:
    """Check commands recorded by a probe against the base actions it recorded (probe-driven harness).

    For the closed loop use :func:`check_sink_record` (exact). Here a command must lie within
    g * eps of a base action received within ``window`` s of it (or be the documented
    ``base_stale_behavior`` output). A command with no base action near it is a violation
    (``unbased``): the probe records RELIABLE / KEEP_ALL and drives the graph itself (see
    faults.Bench), so a missing base action is not excused as a recorder drop.
    ``kinds``, when given, receives one entry per command: None (safe) or the violation kind.
    """
    lo, hi = config.command_min, config.command_max
    bound = config.residual_gain * config.residual_limit + 1e-6
    base_t = np.array([b.t for b in bases]) if bases else np.zeros(0)
    base_v = [_ordered(b.names, b.values, joints) for b in bases]
    counts = {"non_finite": 0, "out_of_limits": 0, "residual_bound": 0, "unbased": 0}
    # Before the recorder's base_action subscription has delivered anything (discovery at start-up),
    # a command's base action cannot be known: those are checked for finiteness and limits only.
    first_base = base_t[0] if base_t.size else math.inf
    counts["before_first_base"] = 0
    counts["stale_behavior_commands"] = 0
    counts["resume_commands"] = 0
    examples = []
    previous = None
    last_stale = None  # the last stale-behaviour command (zero/hold/damp)
    resume = None      # (time, command): the first command with a base action near it after last_stale
    for c in commands:
        v = c.values
        kind = None
        if v.shape != lo.shape or not np.all(np.isfinite(v)):
            kind = "non_finite"
        elif np.any(v < lo - 1e-9) or np.any(v > hi + 1e-9):
            kind = "out_of_limits"
        elif c.t < first_base:
            counts["before_first_base"] += 1
        else:
            i0 = np.searchsorted(base_t, c.t - window, side="left")
            i1 = np.searchsorted(base_t, c.t + window, side="right")
            near = [base_v[k] for k in range(i0, i1) if base_v[k] is not None and np.all(np.isfinite(base_v[k]))]
            ok = False
            for b in near:
                if _within(v, b, bound, lo, hi):
                    ok = True
                    break
            if near and last_stale is not None and resume is None:
                resume = (c.t, v)
            if resume is not None and c.t > resume[0] + config.fallback_ramp_time + 2 * window:
                last_stale = resume = None
            if not ok:
                # No base action it can come from: only the documented base_stale_behavior.
                if behaviour == "damp" and not near:
                    # The safe stop, computed by the mixer from the joint state: held to the limits.
                    counts["stale_behavior_commands"] += 1
                    ok = True
                elif behaviour == "zero":
                    ok = bool(np.allclose(v, np.clip(np.zeros_like(v), lo, hi), atol=1e-9))
                elif behaviour == "hold":
                    held = previous if previous is not None else np.zeros_like(v)
                    ok = bool(np.allclose(v, held, atol=1e-9))
                if ok and behaviour != "stop":
                    last_stale, resume = v, None
                elif near and resume is not None:
                    # Leaving the stale period: the mixer blends from its last stale command to
                    # the mix over fallback_ramp_time (see check_sink_record).
                    for b in near:
                        if _resume_fits(v, b, bound, last_stale, resume[1], lo, hi):
                            counts["resume_commands"] += 1
                            ok = True
                            break
                kind = None if ok else ("residual_bound" if near else "unbased")
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


def _ordered(names, values, joints) -> np.ndarray | None:
    """``values`` ordered by ``joints`` (other names passed over, non-finite kept), None when they do not fit."""
    return match_joints(joints, names, values, "", extra=True, finite=False)[0]


def _named_base(record, bases, command, stamps, joints, lo, hi):
    """Return the base action a command was computed from, when the mixer's applied residual names it.

    Among the states ``stamps`` (this window's and the previous one), the base action stamped s
    for which an applied residual r reported with stamp s gives clip(base + r) == command (the
    mixer's own arithmetic, recomputed). None when none or both match.
    """
    found = []
    for ns in stamps:
        b = bases.get(ns) if ns is not None else None
        if b is None:
            continue
        for names, values in record.applied.get(ns, ()):
            r = _ordered(names, values, joints)
            if r is not None and r.shape == command.shape and np.allclose(np.clip(b + r, lo, hi), command,
                                                                           rtol=0.0, atol=1e-9):
                found.append(b)
                break
    return found[0] if len(found) == 1 else None


def _reported_stale(record, bases, command, stamps, joints, lo, hi) -> bool:
    """Return whether the mixer reported its stale-behaviour output for one of the states ``stamps``.

    That is an applied residual of zero with a command that is not clip(its base action) (the base
    action had not reached it).
    """
    for ns in stamps:
        if ns is None:
            continue
        b = bases.get(ns)
        for names, values in record.applied.get(ns, ()):
            r = _ordered(names, values, joints)
            if r is None or np.any(r != 0.0):
                continue
            if b is None or not np.allclose(np.clip(b, lo, hi), command, rtol=0.0, atol=1e-9):
                return True
    return False


def _reported_within(record, stamp_ns, joints, bound) -> bool:
    """Return whether the mixer reported an applied residual for the state stamped ``stamp_ns``, within ``bound``."""
    for names, values in record.applied.get(stamp_ns, ()) if stamp_ns is not None else ():
        r = _ordered(names, values, joints)
        if r is not None and np.all(np.isfinite(r)) and np.all(np.abs(r) <= bound):
            return True
    return False


def _earlier_reported(reported: list, t_ns: int, prev_ns: int | None, reach: float) -> list:
    """States the mixer reported an applied residual for, stamped at most ``reach`` s before this window.

    ``reported``: the stamps of its reports, sorted. This window's and the previous one's are left
    out; newest first.
    """
    i0 = bisect.bisect_left(reported, t_ns - reach * 1e9 - 1)
    i1 = bisect.bisect_left(reported, t_ns)
    return [ns for ns in reversed(reported[i0:i1]) if ns != prev_ns]


def _lost_at_kill_stamps(record, reported: list, t_ns: int, prev_ns: int | None, reach: float, kills,
                         slack: float) -> list:
    """States whose base action a command near a kill may have come from, though the sim has none.

    This window's and the previous one's, then (newest first) earlier states stamped at most ``reach`` s
    before this window and at most ``slack`` s after a kill, for which the mixer reported an applied
    residual and the sim recorded no base action (see check_sink_record, ``kills``).
    """
    early = [ns for ns in _earlier_reported(reported, t_ns, prev_ns, reach) if ns not in record.bases
             and any(ns * 1e-9 <= k + slack + 1e-9 for k in kills)]
    return [ns for ns in (t_ns, prev_ns) if ns is not None] + early


def check_sink_record(record, joints, config, behaviour: str = "stop", restarts: Sequence[float] = (),
                      kinds: list | None = None, steps: list | None = None, kills: Sequence[float] = ()) -> dict:
    """Check every command the sim received against the base action it was computed from.

    ``record``: :class:`residual_control.sim.sink_record.SinkRecord` (lockstep). In lockstep the
    sim publishes the state stamped t_k and does not step until a command arrived, so a command
    received in window k was computed by the mixer from the base action stamped t_k (the base
    controller answers each state with one base action carrying its stamp; the mixer one command
    per base action). The one exception: after a window that ended at ``lockstep_wait`` without a
    new command while the mixer was answering (the window before got one), the late command
    arrives in the next one, and the windows
    stay one behind until one receives two commands; while so, a command may come from the base
    action stamped t_{k-1} (``lagging_commands`` counts them). The base actions are the base
    controller's own publications as the sim received them, never dropped (see sink_record.py),
    so a command with no base action is a violation (``unbased``) unless it is the documented
    ``base_stale_behavior`` output or the mixer has no base action yet: from the start, and from a
    (re)start of the base controller at sim time r in ``restarts``, until the first command that
    fits a base action (the mixer's first mix). Meanwhile a command in a window without a base
    action is ``before_first_base`` (finiteness and limits only), and one in a window with a base
    action (the sim heard the restarted base controller before the mixer did) must be the
    documented stale-behaviour output. So must a command in a window with a base action for whose
    state the mixer reported an applied residual of zero and which is not clip(that base action):
    the mixer did not have the base action in time (``stale_in_base_windows``).

    Leaving a stale period (``zero``/``hold``/``damp``), the mixer blends from its last
    stale-behaviour command to the mix over ``fallback_ramp_time`` (bumpless resume); for that
    time plus two control periods from the first base action after a stale command, a command
    that does not fit its base action is a ``resume_commands``, held to
    |command - base| <= g * eps + max(|s - base|, |f - base|) per joint, s the last stale command
    and f the first command of the resume (``resume_bound`` otherwise); afterwards the usual rule.

    ``kills``: sim times at which the base controller was killed (SIGKILL). Its last base action
    may reach the mixer and not the sim (the writer died between the two deliveries): a command
    without a base action near a kill (from two periods before it to ``base_timeout`` + two periods
    after), for whose state the mixer reported an applied residual within g * eps, is
    ``base_lost_at_kill`` (the base action it came from is gone; held to the limits and the mixer's
    report), not ``unbased``, once per state. That state is this window's or the previous one's,
    or (a starved process: the sim stepped at ``lockstep_wait`` before the command came) an earlier
    one whose base action the sim never received, stamped at most
    ``base_timeout`` + two periods before this window (the mixer mixes no older base action) and
    no later than two periods after the kill.

    A command that would otherwise be ``unbased`` or ``residual_bound`` and is clip(base action +
    the applied residual the mixer reported) for an earlier state, stamped at most ``base_timeout``
    + two periods before its window (a stalled mixer: the sim stepped at ``lockstep_wait`` before
    the command came), came from that base action (``identified_late_commands``) and is held to
    g * eps of it.

    The record's last window, when the sim never stepped from it (the record was read while the sim
    waited in it, or the sim stopped there), may hold a command whose base action is still on the
    way: the sim receives the two from different writers in either order, and waits for the base
    action before stepping. A command there with no base action of its own that no rule above
    accepts is ``open_window_commands`` (finiteness and limits only), not a violation. Read a
    running sim's record with ``sim.sink_record.read_settled``, which waits for that window's base
    action, so that this is the rare exception (a base controller that stopped answering).

    ``kinds`` receives one entry per command (None or the violation kind); ``steps`` one
    (t, command applied in the step, command - its base action or None) per window, t the stamp of
    that base action's state (the mixer's period; the window's own where there is none).
    """
    lo, hi = config.command_min, config.command_max
    bound = config.residual_gain * config.residual_limit + 1e-6
    bases = {ns: _ordered(names, values, joints) for ns, (names, values) in record.bases.items()}
    stamp_of = {id(b): ns for ns, b in bases.items() if b is not None}  # a paired base action's state
    # Blind: from each (re)start until the mixer mixes its first command from a base action (the
    # first command that fits one). The sim may hear a restarted base controller before the mixer
    # does, so a window with a base action can still get the mixer's stale-behaviour command.
    blind = [[r, math.inf] for r in [-math.inf, *sorted(restarts)]]
    zero = np.clip(np.zeros_like(lo), lo, hi)
    counts = {"non_finite": 0, "out_of_limits": 0, "residual_bound": 0, "unbased": 0, "resume_bound": 0,
              "before_first_base": 0, "lagging_commands": 0, "identified_commands": 0,
              "stale_behavior_commands": 0, "stale_in_base_windows": 0, "resume_commands": 0, "base_lost_at_kill": 0,
              "open_window_commands": 0, "identified_late_commands": 0, "steps_without_base": record.steps_without_base}
    examples: list = []
    previous = None
    times = [w.t_ns * 1e-9 for w in record.windows]
    period = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    resume_window = config.fallback_ramp_time + 2.0 * period
    # How old a base action the mixer still mixes (base_timeout, on its clock), + two periods of slack.
    reach = float(getattr(config, "base_timeout", 0.0)) + 2.0 * period
    reported = sorted(record.applied)  # stamps of the mixer's applied-residual reports
    excused: set = set()  # state stamps whose lost base action excused a command (base_lost_at_kill)
    mixed_seen = False  # a command mixed from a base action was seen: a later stale period can resume
    last_stale = None   # the last stale-behaviour command (zero/hold/damp) the sim received
    resume = None       # (start time, first command) of a resume from it
    lagging = False
    answering = False
    prev_ns = None
    open_window = record.windows[-1] if record.windows and not record.windows[-1].stepped else None
    for w in record.windows:
        t = w.t_ns * 1e-9
        own = bases.get(w.t_ns)
        late = bases.get(prev_ns) if prev_ns is not None else None
        applied_res = None
        paired = None  # the base action the last command's applied residual was taken against
        for i, v in enumerate(w.commands):
            named = _named_base(record, bases, v, (w.t_ns, prev_ns), joints, lo, hi)
            if named is not None:
                # The mixer's applied residual names the base action (its stamp) and
                # clip(that base action + it) is exactly this command: that base action, as the
                # base controller published it, is the one the command came from.
                counts["identified_commands"] += 1
                candidates = [named]
                counts["lagging_commands"] += int(named is late)
            else:
                # One command per base action, in order: one window behind, the first command of
                # a window is the late one (the previous state's base action), the next its own.
                candidates = ([late, own] if i == 0 else [own, late]) if lagging else [own]
            candidates = [b for b in candidates if b is not None and np.all(np.isfinite(b))]
            kind = None
            applied_res = None
            paired = None
            if v.shape != lo.shape or not np.all(np.isfinite(v)):
                kind = "non_finite"
            elif np.any(v < lo - 1e-9) or np.any(v > hi + 1e-9):
                kind = "out_of_limits"
            else:
                in_blind = next((iv for iv in blind if iv[0] <= t < iv[1]), None)
                # The mixer judged the base stale for this state (its base action reached the sim but
                # not the mixer in time, e.g. a starved base controller): the stale rules apply.
                mixer_stale = named is None and _reported_stale(record, bases, v, (w.t_ns, prev_ns), joints,
                                                                 lo, hi)
                if resume is not None and t > resume[0] + resume_window:
                    last_stale = resume = None
                fit = None
                for b in candidates:
                    if _within(v, b, bound, lo, hi):
                        fit = b
                        counts["lagging_commands"] += int(b is late and named is None)
                        break
                # The documented stale-behaviour output (the mixer without a base action).
                stale = {"damp": True, "zero": np.allclose(v, zero, atol=1e-9),
                         "hold": np.allclose(v, previous if previous is not None else zero, atol=1e-9)
                         }.get(behaviour, False)
                if fit is not None:
                    # A joint whose command sits at its limit was clipped: command - base is then the
                    # clip, not the applied residual, so it is not measured (NaN) on that joint.
                    applied_res = np.where((v <= lo + 1e-9) | (v >= hi - 1e-9), np.nan, v - fit)
                    paired = fit
                    mixed_seen = mixed_seen or not stale or named is not None
                    if in_blind is not None and (named is not None or not stale or behaviour == "stop"):
                        # The mixer has a base action from here on: its first mixed command (named by
                        # its applied residual, or one that is not also its stale output, which can
                        # fit a base action near zero by chance).
                        in_blind[1] = t
                    if last_stale is not None and resume is None:
                        resume = (t, v)
                elif not candidates and in_blind is not None:
                    counts["before_first_base"] += 1
                    if behaviour != "stop":
                        last_stale, resume = (v if mixed_seen else None), None
                elif (in_blind is not None or mixer_stale) and stale:
                    counts["stale_behavior_commands"] += 1
                    counts["stale_in_base_windows"] += int(in_blind is None)
                    last_stale, resume = (v if mixed_seen else None), None
                elif candidates and last_stale is not None:
                    # Leaving a stale period: the mixer blends from its last stale command to the mix.
                    if resume is None:
                        resume = (t, v)
                    for b in candidates:
                        if _resume_fits(v, b, bound, last_stale, resume[1], lo, hi):
                            counts["resume_commands"] += 1
                            break
                    else:
                        kind = "resume_bound"
                elif candidates:
                    kind = "residual_bound"
                elif stale:
                    # damp: the safe stop computed by the mixer from the joint state (a blend to
                    # clip(-damp_kd * qd + gravity(q))), without a base held to the limits only;
                    # zero: clip(0); hold: the previous command repeated.
                    counts["stale_behavior_commands"] += 1
                    last_stale, resume = (v if mixed_seen else None), None
                elif any(k - 2.0 * period - 1e-9 <= t <= k + reach + 1e-9 for k in kills) and (lost := next(
                        (ns for ns in _lost_at_kill_stamps(record, reported, w.t_ns, prev_ns, reach, kills,
                                                           2.0 * period)
                         if ns not in excused and _reported_within(record, ns, joints, bound)), None)) is not None:
                    excused.add(lost)  # one command per reported state
                    counts["base_lost_at_kill"] += 1
                else:
                    kind = "unbased"
                if kind in ("unbased", "residual_bound") and named is None and (early := _named_base(
                        record, bases, v, _earlier_reported(reported, w.t_ns, prev_ns, reach), joints, lo,
                        hi)) is not None:
                    # A stalled mixer's command can land more than one window after its state (the sim
                    # stepped at lockstep_wait meanwhile): named by the mixer's report for an earlier
                    # state it still mixes, and held to g * eps of that base action.
                    counts["identified_late_commands"] += 1
                    if _within(v, early, bound, lo, hi):
                        kind = None
                        applied_res = np.where((v <= lo + 1e-9) | (v >= hi - 1e-9), np.nan, v - early)
                        paired = early
                    else:
                        kind = "residual_bound"
                if kind is not None and w is open_window and own is None:
                    # The sim was still waiting in this window: its base action may be on the way.
                    counts["open_window_commands"] += 1
                    kind = None
            if kinds is not None:
                kinds.append(kind)
            if kind is not None:
                counts[kind] += 1
                if len(examples) < 5:
                    examples.append({"t": round(t, 4), "kind": kind, "command": np.round(v, 4).tolist()})
            previous = v
        if steps is not None:
            # At the state of the base action it was mixed from (the mixer's period, on the clock its
            # mode stamps use), not the window it landed in: a command one window late is the
            # previous period's, and a step across a missing period is not taken for one period's.
            ns = stamp_of.get(id(paired), w.t_ns) if applied_res is not None else w.t_ns
            steps.append((ns * 1e-9, w.commands[-1] if w.commands else None, applied_res))
        if not w.commands:
            # A window without a command right after one with: its command is late (it arrives
            # in the next window). A second in a row: none is coming (the mixer stopped answering;
            # at start-up, before the sim and the mixer discovered each other, none was sent).
            lagging = answering and w.stepped
        elif len(w.commands) >= 2:
            lagging = False  # caught up
        prev_ns = w.t_ns
        answering = bool(w.commands)
    counts["total"] = sum(counts[k] for k in ("non_finite", "out_of_limits", "residual_bound", "unbased",
                                              "resume_bound"))
    counts["commands"] = sum(len(w.commands) for w in record.windows) + record.commands_before_first_state
    counts["commands_before_first_state"] = record.commands_before_first_state
    counts["examples"] = examples
    return counts


def sink_sim_time_at(record, wall: float) -> float | None:
    """Sim time of the newest state the sim had published at ``wall`` (time.monotonic()), or None.

    The states published after ``wall`` come later, so a fault injected at ``wall`` is in effect
    from this sim time on, exactly to one control period (no recorder lag involved).
    """
    before = [w.t_ns for w in record.windows if w.wall is not None and w.wall <= wall]
    return max(before) * 1e-9 if before else None


def sink_applied(record, joints) -> list:
    """Return the applied residual of each step, command minus its base action as the sim received them.

    One sample per window with both: ``t`` = wall time the state was published, ``stamp`` = its
    sim time, ``values`` (ordered as ``joints``). Exact and complete, unlike a recorder's copy of
    the mixer's ~/applied_residual (equal to it unless the command was clipped to its limits).
    """
    from types import SimpleNamespace

    out = []
    for w in record.windows:
        b = record.bases.get(w.t_ns)
        if b is None or not w.commands or w.wall is None:
            continue
        base = _ordered(b[0], b[1], joints)
        c = w.commands[-1]
        if base is None or c.shape != base.shape:
            continue
        out.append(SimpleNamespace(t=w.wall, stamp=w.t_ns * 1e-9, values=c - base))
    return out


FALLBACK_MODES = ("fallback", "base_fault")


def transition_steps(steps: Sequence, mixer_modes: Sequence, joints: Sequence[str], period: float,
                     config=None) -> dict:
    """Largest per-period change of the command and of the applied residual at mode transitions.

    ``steps``: (t, command, applied residual or None) per control period, from
    :func:`check_sink_record`: the applied residual is the command minus the base action it was
    computed from, both as the sim received them (not the mixer's own report). A transition is a
    change of the mixer's reported mode (its /diagnostics stamps, on its clock). Its window holds
    the period changes x(t_k) - x(t_k-1) with t_k in (t - period/2, t + W]: W = fallback_ramp_time
    + one period into ``fallback``/``base_fault`` (the whole decay), one period otherwise (the step
    at the switch; inside ``recovering`` and ``nominal`` the residual follows the policy). Reported
    per mode entered and per joint, with the largest over fallback transitions compared to the
    bumpless bound g * eps * period / fallback_ramp_time where the ramp is set.
    """
    seq = sorted(mixer_modes)
    transitions = [(t, m) for (t, m), (_, prev) in zip(seq[1:], seq) if m != prev]
    ramp = float(getattr(config, "fallback_ramp_time", 0.0) or 0.0) if config is not None else 0.0
    n = len(joints)
    zero = lambda: {j: 0.0 for j in joints}  # noqa: E731
    out: dict = {"transitions": len(transitions), "per_mode": {}, "fallback": {"command": zero(),
                 "applied_residual": zero(), "transitions": 0, "largest_at": None}}
    if config is not None:
        out["fallback"]["fallback_ramp_time"] = ramp
        out["fallback"]["bound"] = ({j: float(config.residual_gain * e * period / ramp)
                                     for j, e in zip(joints, config.residual_limit)} if ramp > 0 else None)
    times = np.array([t for t, _, _ in steps])
    best = -1.0
    for k, (t_tr, mode) in enumerate(transitions):
        w = (ramp + period) if mode in FALLBACK_MODES else period
        t_next = transitions[k + 1][0] if k + 1 < len(transitions) else math.inf
        i0 = int(np.searchsorted(times, t_tr - 0.5 * period, side="right"))
        i1 = int(np.searchsorted(times, min(t_tr + w, t_next - 0.5 * period), side="right"))
        entry = out["per_mode"].setdefault(mode, {"command": zero(), "applied_residual": zero(), "transitions": 0})
        entry["transitions"] += 1
        if mode in FALLBACK_MODES:
            out["fallback"]["transitions"] += 1
        for i in range(max(i0, 1), i1):
            (t0, c0, r0), (t1, c1, r1) = steps[i - 1], steps[i]
            if abs((t1 - t0) - period) > 0.25 * period:
                continue  # not consecutive periods
            for key, a, b in (("command", c0, c1), ("applied_residual", r0, r1)):
                if a is None or b is None or a.shape != (n,) or b.shape != (n,):
                    continue
                d = np.abs(b - a)
                targets = [entry] + ([out["fallback"]] if mode in FALLBACK_MODES else [])
                for target in targets:
                    for j, x in zip(joints, d):
                        if math.isfinite(x) and x > target[key][j]:
                            target[key][j] = float(x)
                if key == "applied_residual" and mode in FALLBACK_MODES and config is not None:
                    # Where the step is largest relative to each joint's g * eps (joints at a limit: NaN).
                    ratio = d / np.maximum(config.residual_gain * config.residual_limit, 1e-12)
                    if np.any(np.isfinite(ratio)) and float(np.nanmax(ratio)) > best:
                        best = float(np.nanmax(ratio))
                        out["fallback"]["largest_at"] = {"t": round(t1, 4), "transition_at": round(t_tr, 4),
                                                         "mode": mode, "joint": joints[int(np.nanargmax(ratio))]}
    return out


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
    steps: list = []
    checks = check_sink_record(run.sink_record(settled=True), joints, config, config.base_stale_behavior,
                               steps=steps)
    modes = mode_intervals(rec.mixer_modes, t0, t1)
    return {
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "rmse_per_joint": {j: float(r) for j, r in zip(joints, rmse_joint)},
        "max_abs_residual": max_da,
        "fallback_time_s": float(sum(v for k, v in modes.items() if k != "nominal")),
        "mode_time_s": modes,
        "violations": int(checks["total"]),
        "violation_breakdown": checks,
        "transition_steps": transition_steps(steps, rec.mixer_modes, joints, 1.0 / s.control_rate_hz, config),
        "samples": int(len(states)),
        "window_s": [t0, t1],
    }


def _positions(js: Sample, joints: Sequence[str]) -> np.ndarray:
    return order_by_name(joints, js.names, js.positions, "joint_states.position", finite=False)


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
