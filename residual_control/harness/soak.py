"""`residual-control soak`: run the loop at a high rate for minutes; watch memory, CPU, rate and lateness.

Modes (``--mode``):

* ``fused`` (default): ``residual_controller`` (base controller + policy +
  mixer in one process), the configuration docs/performance.md recommends
  for 1 kHz;
* ``graph``: ``base_controller``, ``residual_policy`` and ``residual_mixer``,
  each its own process.

Either way the plant is ``mujoco_sim`` in ``realtime`` mode at ``--rate`` Hz
(control_rate_hz = rate, on the wall clock), with reference_publisher and
perception. The shipped model is trained for 100 Hz and the policy refuses a
model whose control_rate_hz differs from its own, so the policy runs a
synthetic model (``harness/synthetic_models.linear_model``: da = clip(0.1 *
a_base + b), the same observation contract) declared at ``--rate``, and the
policy's ``control_rate_hz`` is overridden to match.

On any robot (``--robot DIR``, default the built-in arm): its params file, joints, home (the sim's
start pose), reference and demo plant; the synthetic model's bias is sized from its residual limits.

What is measured, and how (the recorder must not measure itself):

* **Commands and achieved rate** come from the mixer's own step counter, the
  ``commands`` value of its /diagnostics status (``residual_mixer: mode`` or
  ``residual_controller: mode``, every ``diagnostics_period``): achieved rate
  = counter increase / the increase of the status stamps (the mixer's clock)
  over the run. Not from what the recorder received.
* **Lateness** of a step = the time the mixer published its applied residual
  (the DDS *source timestamp* of ``~/applied_residual``, written by the
  mixer's middleware at publish, available through rclpy's message info)
  minus the residual's stamp (the stamp of the joint state it answers, set by
  the simulator on the same wall clock): sim publish -> controller -> mixer
  publish. Later than one period counts as late. The middleware *reception*
  timestamp minus the stamp (adds the hop to the recorder, still not its
  Python backlog) is reported as ``delivery``. Neither depends on when the
  recorder's Python callback runs.
* **Safety**, on what the recorder receives: every command received is
  checked finite and within [command_min, command_max]; every applied
  residual received is checked finite and |a - a_base| = |applied| <=
  residual_gain * residual_limit. The callbacks only append; the checks run
  vectorised once a second on the batch received. The recorder subscribes
  best effort (never back-pressuring the graph), so under load it may see a
  subset: ``checked`` says how many commands / applied residuals were checked
  out of the mixer's count. Any violation found fails the run.
* Every second a sampler reads, per node process, the resident memory
  (``VmRSS`` of /proc/<pid>/status) and the CPU time (utime + stime of
  /proc/<pid>/stat, as a share of one core); the soak process itself (the
  recorder) is reported separately.

Fails (exit 1) on a violation, a node that died, no command, or memory
growth: the mean RSS of the last third versus the first third of the run
after warm-up grew by more than ``--max-growth-mib`` MiB or
``--max-growth-pct`` % (either). A rate is reported, never asserted.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from ..paths import share_path

MODES = ("fused", "graph")
CONTROLLERS = {"fused": ("residual_controller",), "graph": ("base_controller", "residual_policy", "residual_mixer")}
MIXER_NODE = {"fused": "residual_controller", "graph": "residual_mixer"}
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
RECORDER = "soak_recorder (this process)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=10.0, help="duration in minutes (default 10)")
    p.add_argument("--rate", type=float, default=1000.0, help="control rate in Hz (default 1000)")
    p.add_argument("--mode", choices=MODES, default="fused",
                   help="fused: residual_controller in one process (default, recommended at 1 kHz); "
                        "graph: base_controller, residual_policy and residual_mixer as separate nodes")
    p.add_argument("--json", default="", help="write the results as JSON to this file")
    p.add_argument("--plot", default="", help="write a PNG plot to this file")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds excluded from the memory comparison (default: 20 %% of the run, 5 s to 60 s)")
    p.add_argument("--max-growth-mib", type=float, default=5.0)
    p.add_argument("--max-growth-pct", type=float, default=10.0)
    p.add_argument("--log-dir", default="", help="keep the nodes' logs in this folder")
    from .robot_args import add_robot_argument

    add_robot_argument(p)


def read_rss_kib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def read_cpu_ticks(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return float(fields[11]) + float(fields[12])  # utime, stime (fields 14, 15 of stat)


def memory_growth(t: np.ndarray, rss_mib: np.ndarray, warmup: float) -> dict:
    """Mean RSS of the last third vs the first third of the samples after ``warmup`` s."""
    keep = t >= warmup
    x = rss_mib[keep]
    if x.size < 3:
        return {"first_third_mib": None, "last_third_mib": None, "growth_mib": 0.0, "growth_pct": 0.0,
                "samples": int(x.size)}
    k = x.size // 3
    first, last = float(np.mean(x[:k])), float(np.mean(x[-k:]))
    return {"first_third_mib": round(first, 2), "last_third_mib": round(last, 2),
            "growth_mib": round(last - first, 3), "growth_pct": round(100.0 * (last - first) / first, 3),
            "samples": int(x.size)}


def check_batch(commands: np.ndarray, applied: np.ndarray, config) -> tuple[dict, list]:
    """Violations in a batch: commands (n, joints) and applied residuals (m, joints), as received.

    A command must be finite and within [command_min, command_max]; an applied
    residual finite and within residual_gain * residual_limit. Rows of the wrong
    width count as non-finite / beyond bound. Returns (counts, up to 5 examples).
    """
    n_j = len(config.joints)
    counts = {"non_finite": 0, "out_of_limits": 0, "applied_beyond_bound": 0}
    examples: list = []
    if commands.size:
        if commands.ndim != 2 or commands.shape[1] != n_j:
            counts["non_finite"] += len(commands)
            examples.append({"kind": "non_finite", "values": str(commands[:1].tolist())})
        else:
            fin = np.all(np.isfinite(commands), axis=1)
            out = fin & np.any((commands < config.command_min - 1e-9) | (commands > config.command_max + 1e-9), axis=1)
            counts["non_finite"] += int(np.sum(~fin))
            counts["out_of_limits"] += int(np.sum(out))
            for kind, rows in (("non_finite", ~fin), ("out_of_limits", out)):
                examples += [{"kind": kind, "command": commands[i].tolist()} for i in np.flatnonzero(rows)[:5]]
    if applied.size:
        bound = config.residual_gain * np.asarray(config.residual_limit, float) + 1e-9
        if applied.ndim != 2 or applied.shape[1] != n_j:
            counts["applied_beyond_bound"] += len(applied)
        else:
            bad = ~np.all(np.isfinite(applied), axis=1) | np.any(np.abs(applied) > bound, axis=1)
            counts["applied_beyond_bound"] += int(np.sum(bad))
            examples += [{"kind": "applied_beyond_bound", "applied_residual": applied[i].tolist()}
                         for i in np.flatnonzero(bad)[:5]]
    return counts, examples[:5]


def transition_summary(parts: list, joints, config) -> dict:
    """Merge transition_steps results: per joint, the largest applied-residual step at a fallback."""
    out = {"source": "the mixer's ~/applied_residual as received (best effort: a step across a dropped "
                     "sample is skipped)",
           "transitions": 0, "fallback_transitions": 0, "fallback_applied_residual": {j: 0.0 for j in joints}}
    ramp = float(getattr(config, "fallback_ramp_time", 0.0) or 0.0)
    out["fallback_ramp_time"] = ramp
    for p in parts:
        if "per_mode" in p:  # a transition_steps result
            out["transitions"] += p["transitions"]
            out["fallback_transitions"] += p["fallback"]["transitions"]
            src = p["fallback"]["applied_residual"]
        else:
            out["transitions"] += p["transitions"]
            out["fallback_transitions"] += p["fallback_transitions"]
            src = p["fallback_applied_residual"]
        for j in joints:
            out["fallback_applied_residual"][j] = max(out["fallback_applied_residual"][j], src[j])
    return out


def model_bias(limit) -> tuple:
    """Return the bias b of the soak's model da = clip(0.1 a_base + b): alternating, from 0.5 N m down.

    ``faults.residual_pattern`` with magnitude min(0.5, limit / 4) (the smallest residual limit): the
    built-in arm's [20, 8] gives (0.5, -0.25).
    """
    from .faults.common import residual_pattern

    return residual_pattern(len(limit), min(0.5, 0.25 * float(min(limit))))


def _write_files(work: Path, rate: float, robot=None) -> tuple[str, str]:
    from ..core.observation import default_observation_names
    from ..nodes.residual_controller import NODE_NAME, fused_parameters
    from ..params_file import node_params, update_section
    from ..robot.folder import load_robot
    from .closed_loop import load_params
    from .synthetic_models import linear_model

    robot = robot or load_robot(None)
    if robot.params is None:
        raise ValueError(f"robot {robot.name!r} ({robot.root}): expected a params file (robot.yaml params:), "
                         "found none")
    params = load_params(robot.params)
    joints = list(node_params(params, "residual_mixer")["joints"])
    if joints != list(robot.joints):
        raise ValueError(f"{robot.params}: expected the joints of robot {robot.name!r} {list(robot.joints)}, "
                         f"found {joints}")
    pol = node_params(params, "residual_policy")
    obs = default_observation_names(joints, pol["perception_features"])
    w = np.zeros((len(obs), len(joints)), np.float32)
    for k, j in enumerate(joints):
        w[obs.index(f"a_base/{j}"), k] = 0.1
    model = linear_model(str(work / f"soak_{rate:g}hz.onnx"), joints, obs, pol["residual_limit"], weights=w,
                         bias=list(model_bias(pol["residual_limit"])), control_rate_hz=rate)
    update_section(params, "residual_policy", control_rate_hz=float(rate), model_path=model)
    params[NODE_NAME] = {"ros__parameters": fused_parameters(params)}
    path = work / "soak_params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path), model


class Recorder:
    """Light subscriptions (append only); counts and checks run in :meth:`drain`, once a second."""

    def __init__(self, joints, config, rate: float, mixer: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        from ..nodes.qos import DIAGNOSTICS_QOS

        self.node = rclpy.create_node("soak_recorder")
        self.config = config
        self.period = 1.0 / rate
        self.status_name = f"{mixer}: mode"
        # Best effort: a slow recorder loses samples (counted), it never slows the graph down.
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._cmd: list = []
        self._applied: list = []  # (source ns, received ns, stamp ns, effort)
        self.counter: list = []  # (mixer status stamp s, mixer commands counter, monotonic receive time)
        self.n_cmd_received = 0
        self.n_applied_received = 0
        self.n_late = 0
        self.lateness: list = []  # chunks of float32 arrays, s: mixer publish - stamp
        self.delivery: list = []  # chunks: middleware reception at the recorder - stamp
        self.violations = {"non_finite": 0, "out_of_limits": 0, "applied_beyond_bound": 0}
        self.examples: list = []
        self.sec_late = self.sec_applied = 0
        self.joints = list(joints)
        self.modes: list = []  # (mixer status stamp s, mode) on every change
        self._recent: list = []  # (stamp s, applied residual) of the last few seconds
        self._transitions_done = 0
        self.transition_steps = transition_summary([], self.joints, config)
        self.node.create_subscription(Float64MultiArray, "commands", self._on_command, qos)
        self.node.create_subscription(JointState, f"{mixer}/applied_residual", self._on_applied, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, DIAGNOSTICS_QOS)

    def _on_command(self, msg) -> None:
        self._cmd.append(msg.data)

    def _on_applied(self, msg, info) -> None:
        s = msg.header.stamp
        self._applied.append((info["source_timestamp"], info["received_timestamp"],
                              s.sec * 1_000_000_000 + s.nanosec, msg.effort))

    def _on_diag(self, msg) -> None:
        for st in msg.status:
            if st.name == self.status_name:
                t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                for kv in st.values:
                    if kv.key == "commands":
                        self.counter.append((t, int(kv.value), time.monotonic()))
                    elif kv.key == "mode" and (not self.modes or self.modes[-1][1] != kv.value):
                        self.modes.append((t, kv.value))

    def reset(self) -> None:
        self._cmd.clear()
        self._applied.clear()

    def drain(self) -> None:
        """Check and count what was received since the last drain; keep only the lateness samples."""
        cmd, self._cmd = self._cmd, []
        app, self._applied = self._applied, []
        commands = np.array([np.asarray(c, float) for c in cmd]) if cmd else np.zeros((0, 0))
        if app:
            src = np.array([a[0] for a in app], np.int64)
            rcv = np.array([a[1] for a in app], np.int64)
            stamp = np.array([a[2] for a in app], np.int64)
            applied = np.array([np.asarray(a[3], float) for a in app])
            late = ((src - stamp) * 1e-9).astype(np.float32)
            self.lateness.append(late)
            self.delivery.append(((rcv - stamp) * 1e-9).astype(np.float32))
            n_late = int(np.sum(late > self.period))
            self.n_late += n_late
            self.sec_late += n_late
            self.sec_applied += len(app)
        else:
            applied = np.zeros((0, 0))
        self.n_cmd_received += len(cmd)
        self.n_applied_received += len(app)
        counts, examples = check_batch(commands, applied, self.config)
        for k, v in counts.items():
            self.violations[k] += v
        if len(self.examples) < 5:
            self.examples += examples[:5 - len(self.examples)]
        if app:
            self._transitions(stamp * 1e-9, applied)

    def _transitions(self, stamps: np.ndarray, applied: np.ndarray) -> None:
        """Largest applied-residual step around each mode transition whose window has been received."""
        from .closed_loop import transition_steps

        self._recent += list(zip(stamps.tolist(), applied))
        self._recent.sort(key=lambda x: x[0])
        newest = self._recent[-1][0]
        ramp = float(getattr(self.config, "fallback_ramp_time", 0.0) or 0.0)
        while self._transitions_done < len(self.modes):
            k = self._transitions_done
            if k == 0:  # the first report is the initial mode, not a transition
                self._transitions_done = 1
                continue
            t_tr = self.modes[k][0]
            if newest < t_tr + ramp + 2 * self.period + 0.5:
                break  # its window is not all here yet
            steps = [(t, None, v) for t, v in self._recent if t_tr - 1.0 <= t <= t_tr + ramp + 1.0]
            one = transition_steps(steps, self.modes[k - 1:k + 1], self.joints, self.period, self.config)
            self.transition_steps = transition_summary([self.transition_steps, one], self.joints, self.config)
            self._transitions_done += 1
        self._recent = [x for x in self._recent if x[0] >= newest - 3.0 - ramp]

    def second(self) -> tuple[int, int]:
        out = (self.sec_late, self.sec_applied)
        self.sec_late = self.sec_applied = 0
        return out


def run(args) -> int:
    if not (args.minutes > 0 and math.isfinite(args.minutes)):
        print(f"soak: --minutes: expected a number > 0, found {args.minutes}", file=sys.stderr)
        return 2
    if not (1.0 <= args.rate <= 1000.0):
        print(f"soak: --rate: expected 1 to 1000 Hz (mujoco_sim's control_rate_hz range), found {args.rate}",
              file=sys.stderr)
        return 2
    try:
        from .robot_args import robot_of

        robot = robot_of(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"soak: --robot: {exc}", file=sys.stderr)
        return 2
    doc = soak(args.minutes * 60.0, args.rate, mode=getattr(args, "mode", "fused"), warmup=args.warmup,
               max_growth_mib=args.max_growth_mib, max_growth_pct=args.max_growth_pct, log_dir=args.log_dir or None,
               robot=robot)
    _print(doc)
    if args.plot:
        plot(doc, args.plot)
        print(f"plot written to {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
        print(f"results written to {args.json}")
    return 0 if doc["passed"] else 1


def soak(duration: float, rate: float, mode: str = "fused", warmup: float | None = None, max_growth_mib: float = 5.0,
         max_growth_pct: float = 10.0, log_dir: str | None = None, progress=None, robot=None) -> dict:
    """Run the soak on ``robot`` (a RobotSpec, a robot folder or name; default the built-in arm)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ..robot.folder import RobotSpec, load_robot
    from .closed_loop import load_params, mixer_config, node_params
    from .graph import Graph, NodeSpec

    robot = robot if isinstance(robot, RobotSpec) else load_robot(robot or None)

    if mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, found {mode!r}")
    say = progress or (lambda m: print(f"[soak] {m}", flush=True))
    if warmup is None:
        warmup = min(max(0.2 * duration, 5.0), 60.0)
    mixer = MIXER_NODE[mode]
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="residual_soak_"))
    own = not rclpy.ok()
    if own:
        rclpy.init()
    failures: list = []
    try:
        params_file, model = _write_files(work, rate, robot)
        params = load_params(params_file)
        joints = list(node_params(params, "residual_mixer")["joints"])
        config = mixer_config(params)
        plant = str(robot.plant or share_path("config", "plants", "real.yaml"))
        reference = str(robot.reference or share_path("config", "reference.yaml"))
        specs = [NodeSpec(name, [params_file]) for name in CONTROLLERS[mode]] + [
            NodeSpec("perception", [], {"plant_file": plant}),
            NodeSpec("reference_publisher", [reference]),
        ]
        rec = Recorder(joints, config, rate, mixer)
        executor = SingleThreadedExecutor()
        executor.add_node(rec.node)
        # The recorder receives on the lean loop: on 2 cores it must not be where the time goes.
        from ..nodes.lean import LeanLoop

        loop = LeanLoop(rec.node, executor)
        graph = Graph(specs, log_dir=log_dir or str(work / "logs"))
        try:
            topics = ["commands", f"{mixer}/applied_residual", "perception", "reference"]
            deadline = time.monotonic() + 120.0
            while not all(rec.node.count_publishers(t) for t in topics):
                graph.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError("graph not ready after 120 s")
                loop.spin_once(0.05)
            graph.start(NodeSpec("mujoco_sim", [], {
                "robot": str(robot.root), "plant_file": plant, "mode": "realtime", "publish_clock": False,
                "control_rate_hz": float(rate), "physics_rate_hz": max(1000.0, float(rate)),
                "initial_positions": [float(x) for x in robot.home]}))
            # Start measuring once commands flow and the mixer's counter has been seen.
            deadline = time.monotonic() + 120.0
            while not (rec._cmd and rec.counter and rec.counter[-1][1] > 0):
                graph.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError("no command within 120 s of starting the simulator")
                loop.spin_once(0.05)
            rec.drain()
            rec.lateness.clear()
            rec.delivery.clear()
            rec.n_late = rec.n_cmd_received = rec.n_applied_received = 0
            rec.second()
            say(f"{len(specs) + 1} nodes up ({mode} mode, robot {robot.name}), {rate:g} Hz, running {duration:.0f} s")
            pids = {k: p.pid for k, p in graph.processes.items()}
            pids_all = {**pids, RECORDER: os.getpid()}
            t0 = time.monotonic()
            start_counter = rec.counter[-1]
            series = {"t": [], "rss_mib": {k: [] for k in pids_all}, "cpu_share": {k: [] for k in pids_all},
                      "late": [], "received": [], "commands": []}
            last_cpu = {k: read_cpu_ticks(pid) for k, pid in pids_all.items()}
            last_t = t0
            last_counter = start_counter
            next_sample = t0 + 1.0
            next_check = t0 + 2.0
            next_report = t0 + 30.0
            while True:
                loop.spin_once(0.01)
                now = time.monotonic()
                if now >= next_sample and now - last_t >= 0.9:
                    dt = now - last_t
                    rec.drain()
                    series["t"].append(round(now - t0, 3))
                    for k, pid in pids_all.items():
                        rss = read_rss_kib(pid)
                        cpu = read_cpu_ticks(pid)
                        series["rss_mib"][k].append(None if rss is None else round(rss / 1024.0, 3))
                        share = None if cpu is None or last_cpu[k] is None else (cpu - last_cpu[k]) / CLK_TCK / dt
                        series["cpu_share"][k].append(None if share is None else round(share, 4))
                        last_cpu[k] = cpu
                    late, received = rec.second()
                    series["late"].append(late)
                    series["received"].append(received)
                    c = rec.counter[-1]
                    series["commands"].append(None if c[0] <= last_counter[0] else
                                              round((c[1] - last_counter[1]) / (c[0] - last_counter[0]), 1))
                    last_counter = c if c[0] > last_counter[0] else last_counter
                    last_t = now
                    next_sample = now + 1.0
                if now >= next_check:
                    next_check = now + 2.0
                    try:
                        graph.check_alive()
                    except RuntimeError as exc:
                        failures.append(f"a node died: {str(exc)[:800]}")
                        break
                if now >= next_report:
                    c = rec.counter[-1]
                    say(f"{now - t0:5.0f}/{duration:.0f} s: {c[1] - start_counter[1]} commands "
                        f"({(c[1] - start_counter[1]) / max(c[0] - start_counter[0], 1e-9):.0f} Hz), "
                        f"{rec.n_late} late of {rec.n_applied_received} received, "
                        f"{sum(rec.violations.values())} violations")
                    next_report += 30.0
                if now - t0 >= duration:
                    break
            # The mixer's last status inside the run: wait for one published after the end.
            end_wall = time.time()
            deadline = time.monotonic() + 3.0
            while rec.counter[-1][0] < end_wall and time.monotonic() < deadline:
                loop.spin_once(0.05)
            elapsed = time.monotonic() - t0
            rec.drain()
        finally:
            graph.stop()
            loop.close()
            executor.remove_node(rec.node)
            rec.node.destroy_node()
    finally:
        if own:
            rclpy.try_shutdown()
        shutil.rmtree(work, ignore_errors=True)

    t = np.asarray(series["t"], float)
    nodes = {}
    for k in pids_all:
        rss = np.asarray([np.nan if v is None else v for v in series["rss_mib"][k]], float)
        cpu = np.asarray([np.nan if v is None else v for v in series["cpu_share"][k]], float)
        g = memory_growth(t[np.isfinite(rss)], rss[np.isfinite(rss)], warmup)
        nodes[k] = {"pid": pids_all[k], "rss": g,
                    "rss_max_mib": float(np.nanmax(rss)) if np.isfinite(rss).any() else None,
                    "cpu_share_mean": round(float(np.nanmean(cpu)), 4) if np.isfinite(cpu).any() else None,
                    "cpu_share_max": round(float(np.nanmax(cpu)), 4) if np.isfinite(cpu).any() else None}
        if k != RECORDER and (g["growth_mib"] > max_growth_mib or g["growth_pct"] > max_growth_pct):
            failures.append(f"{k}: memory grew {g['growth_mib']:.2f} MiB ({g['growth_pct']:.1f} %) from the first "
                            f"to the last third (limits {max_growth_mib} MiB, {max_growth_pct} %)")
    recorder = nodes.pop(RECORDER)
    end_counter = rec.counter[-1]
    n_commands = end_counter[1] - start_counter[1]
    span = end_counter[0] - start_counter[0]
    lat = np.concatenate(rec.lateness).astype(float) if rec.lateness else np.zeros(0)
    dlv = np.concatenate(rec.delivery).astype(float) if rec.delivery else np.zeros(0)
    total_viol = int(sum(rec.violations.values()))
    if total_viol:
        failures.append(f"{total_viol} command violations: {rec.violations}")
    if n_commands <= 0 or rec.n_cmd_received == 0:
        failures.append(f"no command: mixer counter +{n_commands}, {rec.n_cmd_received} received")
    doc = {
        "robot": {"name": robot.name, "folder": str(robot.root), "joints": list(robot.joints)},
        "mode": mode, "controller_nodes": list(CONTROLLERS[mode]), "mixer_node": mixer,
        "rate_hz": rate, "period_s": 1.0 / rate, "duration_s": round(elapsed, 1), "warmup_s": warmup,
        "driver": "mujoco_sim realtime mode (wall clock)",
        "model": f"synthetic linear model declared at {rate:g} Hz (the shipped model is trained for 100 Hz)",
        "commands": int(n_commands), "commands_source": f"{mixer}'s /diagnostics 'commands' counter (mixer steps)",
        "counter_span_s": round(span, 3),
        "achieved_rate_hz": round(n_commands / span, 1) if span > 0 else 0.0,
        "achieved_share": round(n_commands / span / rate, 4) if span > 0 else 0.0,
        "late": {"definition": "mixer publish time (DDS source timestamp of ~/applied_residual) - joint state stamp",
                 "threshold_s": 1.0 / rate, "count": rec.n_late, "measured": int(lat.size),
                 "share": round(rec.n_late / max(lat.size, 1), 4),
                 "p50_s": _q(lat, 50), "p90_s": _q(lat, 90), "p99_s": _q(lat, 99), "max_s": _q(lat, 100)},
        "delivery": {"definition": "DDS reception time at the recorder - joint state stamp",
                     "p50_s": _q(dlv, 50), "p99_s": _q(dlv, 99), "max_s": _q(dlv, 100)},
        "checked": {"commands": rec.n_cmd_received, "applied_residuals": rec.n_applied_received,
                    "share_of_mixer_commands": (round(min(1.0, rec.n_cmd_received / n_commands), 4)
                                                if n_commands > 0 else 0.0)},
        "violations": total_viol, "violation_breakdown": rec.violations, "violation_examples": rec.examples,
        "transition_steps": rec.transition_steps,
        "memory_limits": {"growth_mib": max_growth_mib, "growth_pct": max_growth_pct},
        "nodes": nodes, "recorder": recorder, "series": series, "failures": failures, "passed": not failures,
        "loop": os.environ.get("RESIDUAL_CONTROL_EXECUTOR", "") or "the nodes' executor parameter (default lean)",
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()},
    }
    return doc


def _q(x: np.ndarray, q: float) -> float | None:
    return None if x.size == 0 else round(float(np.percentile(x, q)), 5)


def _print(doc: dict) -> None:
    print()
    print(f"soak ({doc['mode']} mode: {', '.join(doc['controller_nodes'])}): {doc['duration_s']:.0f} s at "
          f"{doc['rate_hz']:g} Hz ({doc['driver']})")
    la = doc.get("load_average")
    if la:
        print(f"load average (1, 5, 15 min) before {la['before']}, after {la['after']} on {la['cpus']} CPUs; "
              f"loop: {doc['loop']}")
    print(f"commands (mixer counter): {doc['commands']} in {doc['counter_span_s']:.1f} s = "
          f"{doc['achieved_rate_hz']:.1f} Hz achieved ({100 * doc['achieved_share']:.1f} % of {doc['rate_hz']:g} Hz)")
    late = doc["late"]
    print(f"late (mixer publish - stamp > {late['threshold_s'] * 1e3:.1f} ms): {late['count']} of {late['measured']} "
          f"({100 * late['share']:.2f} %); p50 {_ms(late['p50_s'])}, p90 {_ms(late['p90_s'])}, "
          f"p99 {_ms(late['p99_s'])}, max {_ms(late['max_s'])}")
    d = doc["delivery"]
    print(f"delivery to the recorder (DDS reception - stamp): p50 {_ms(d['p50_s'])}, p99 {_ms(d['p99_s'])}")
    print(f"{'node':28} {'RSS first [MiB]':>16} {'RSS last [MiB]':>15} {'growth [MiB]':>13} {'CPU mean':>9} "
          f"{'CPU max':>8}")
    for k, n in list(doc["nodes"].items()) + [(RECORDER, doc["recorder"])]:
        r = n["rss"]
        print(f"{k:28} {_f(r['first_third_mib']):>16} {_f(r['last_third_mib']):>15} {_f(r['growth_mib']):>13} "
              f"{_pct(n['cpu_share_mean']):>9} {_pct(n['cpu_share_max']):>8}")
    c = doc["checked"]
    print(f"violations: {doc['violations']} ({c['commands']} commands = {100 * c['share_of_mixer_commands']:.1f} % "
          f"of the mixer's, and {c['applied_residuals']} applied residuals checked)")
    for f in doc["failures"]:
        print(f"FAILED: {f}")
    print("PASSED" if doc["passed"] else "FAILED")


def _ms(x) -> str:
    return "-" if x is None else f"{x * 1e3:.2f} ms"


def _f(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _pct(x) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f} %"


def plot(doc: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = doc["series"]
    t = np.asarray(s["t"], float)
    fig, axes = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    for k in s["rss_mib"]:
        axes[0].plot(t, [np.nan if v is None else v for v in s["rss_mib"][k]], label=k)
        axes[1].plot(t, [np.nan if v is None else 100 * v for v in s["cpu_share"][k]], label=k)
    axes[0].axvline(doc["warmup_s"], color="k", ls=":", lw=1)
    axes[0].set_ylabel("VmRSS [MiB]")
    axes[0].legend(fontsize=7, ncol=3)
    axes[1].set_ylabel("CPU [% of one core]")
    axes[1].legend(fontsize=7, ncol=3)
    late = np.asarray(s["late"], float)
    received = np.maximum(np.asarray(s["received"], float), 1)
    axes[2].plot(t, 100 * late / received, color="tab:red",
                 label=f"late (mixer publish - stamp > {doc['period_s'] * 1e3:.1f} ms) [% of measured]")
    axes[2].plot(t, [np.nan if v is None else 100 * v / doc["rate_hz"] for v in s["commands"]], color="tab:blue",
                 label="mixer commands / expected [%]")
    axes[2].plot(t, 100 * np.asarray(s["received"], float) / doc["rate_hz"], color="tab:gray", lw=0.8,
                 label="checked by the recorder / expected [%]")
    axes[2].set_ylabel("%")
    axes[2].set_xlabel("time [s]")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"soak ({doc['mode']}) at {doc['rate_hz']:g} Hz, {doc['duration_s']:.0f} s: "
                 f"{doc['achieved_rate_hz']:.0f} Hz achieved, {100 * doc['late']['share']:.1f} % late, "
                 f"{'PASSED' if doc['passed'] else 'FAILED'}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
