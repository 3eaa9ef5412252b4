"""`residual-control soak`: run the loop at a high rate for minutes; watch memory, CPU and lateness.

The graph is the closed loop on the wall clock: ``mujoco_sim`` in
``realtime`` mode at ``--rate`` Hz (control_rate_hz = physics steps per
measurement), reference, perception, base_controller, residual_policy and
residual_mixer, each its own process. The shipped model is trained for
100 Hz and residual_policy refuses a model whose control_rate_hz differs
from its own, so for another rate the policy runs a synthetic model
(``tools/synthetic_models.linear_model``: da = clip(0.1 * a_base + b),
the same observation contract) declared at that rate, and the policy's
``control_rate_hz`` is overridden to match.

Every second a sampler reads, per node process, the resident memory
(``VmRSS`` of /proc/<pid>/status) and the CPU time (utime + stime of
/proc/<pid>/stat, as a share of one core). A recorder node checks every
command (finite, within limits, |a - a_base| <= g * eps, as the fault
matrix does) and measures each command's lateness: the receive time of the
applied residual minus its stamp (the stamp of the joint state it answers,
wall clock); later than one period counts as late.

Fails (exit 1) on a violation, a node that died, or memory growth: the mean
RSS of the last third versus the first third of the run after warm-up grew
by more than ``--max-growth-mib`` MiB or ``--max-growth-pct`` % (either).
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

from ..paths import default_params_file, share_path

NODES = ("mujoco_sim", "reference_publisher", "perception", "base_controller", "residual_policy", "residual_mixer")
# A command must lie within g * eps of a base action the recorder received within
# this many seconds of it. Wider than the fault matrix's 0.1 s: at 1 kHz on a
# loaded machine the recorder itself falls behind, and its two subscriptions
# (commands, base_action) are not drained in lockstep.
CHECK_WINDOW = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=10.0, help="duration in minutes (default 10)")
    p.add_argument("--rate", type=float, default=1000.0, help="control rate in Hz (default 1000)")
    p.add_argument("--json", default="", help="write the results as JSON to this file")
    p.add_argument("--plot", default="", help="write a PNG plot to this file")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds excluded from the memory comparison (default: 20 %% of the run, 5 s to 60 s)")
    p.add_argument("--max-growth-mib", type=float, default=5.0)
    p.add_argument("--max-growth-pct", type=float, default=10.0)
    p.add_argument("--log-dir", default="", help="keep the nodes' logs in this folder")


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


def _write_files(work: Path, rate: float) -> tuple[str, str]:
    from ..core.observation import default_observation_names
    from .closed_loop import load_params, node_params
    from .synthetic_models import linear_model

    params = load_params(default_params_file())
    joints = list(node_params(params, "residual_mixer")["joints"])
    pol = node_params(params, "residual_policy")
    obs = default_observation_names(joints, pol["perception_features"])
    w = np.zeros((len(obs), len(joints)), np.float32)
    for k, j in enumerate(joints):
        w[obs.index(f"a_base/{j}"), k] = 0.1
    model = linear_model(str(work / f"soak_{rate:g}hz.onnx"), joints, obs, pol["residual_limit"], weights=w,
                         bias=[0.5, -0.25], control_rate_hz=rate)
    params["residual_policy"]["ros__parameters"].update(control_rate_hz=float(rate), model_path=model)
    path = work / "soak_params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path), model


class Recorder:
    """Checks every command and measures lateness, keeping only a short window in memory."""

    def __init__(self, joints, config, rate: float) -> None:
        import rclpy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        from .probe import RECORD_QOS, Sample

        self.rclpy = rclpy
        self.node = rclpy.create_node("soak_recorder")
        self.joints = list(joints)
        self.config = config
        self.period = 1.0 / rate
        self._Sample = Sample
        self.commands: list = []
        self.bases: list = []
        self.lateness: list = []  # per applied residual, s
        self.late_series: list = []  # (t, late count in the last second, commands in it)
        self.n_commands = 0
        self.n_late = 0
        self.violations = {"non_finite": 0, "out_of_limits": 0, "residual_bound": 0, "unbased": 0,
                           "applied_beyond_bound": 0}
        self.unverified = 0  # commands whose base action the recorder never received (dropped to it)
        self.verified_by_pair = 0
        self.base_by_stamp: dict = {}  # stamp ns -> (t, values by joint)
        self.pairs: list = []  # (t, expected command) from applied residual + its base, matched by stamp
        self.applied: list = []  # (t, stamp ns, applied residual) not yet paired
        self.examples: list = []
        self._late_sec = 0
        self._cmd_sec = 0
        self._clock = self.node.get_clock()
        self.node.create_subscription(Float64MultiArray, "commands", self._on_command, RECORD_QOS)
        self.node.create_subscription(JointState, "base_action", self._on_base, RECORD_QOS)
        self.node.create_subscription(JointState, "residual_mixer/applied_residual", self._on_applied, RECORD_QOS)

    def _on_command(self, msg) -> None:
        self.commands.append(self._Sample(time.monotonic(), 0.0, None, self.joints, np.asarray(msg.data, float)))
        self.n_commands += 1
        self._cmd_sec += 1

    def _on_base(self, msg) -> None:
        t = time.monotonic()
        sample = self._Sample(t, 0.0, None, list(msg.name), np.asarray(msg.effort, float))
        self.bases.append(sample)
        if set(self.joints) <= set(sample.names) and len(sample.names) == len(sample.values):
            key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self.base_by_stamp[key] = (t, sample.values[[sample.names.index(j) for j in self.joints]])

    def _on_applied(self, msg) -> None:
        now = self._clock.now().nanoseconds * 1e-9
        late = now - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        # Exact per-step check: the applied residual is stamped with its base action's stamp.
        a = np.asarray(msg.effort, float)
        cfg = self.config
        if a.shape != cfg.residual_limit.shape or not np.all(np.isfinite(a)) or \
                np.any(np.abs(a) > cfg.residual_gain * cfg.residual_limit + 1e-9):
            self.violations["applied_beyond_bound"] += 1
        self.applied.append((time.monotonic(), msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, a))
        self.lateness.append(late)
        if late > self.period:
            self.n_late += 1
            self._late_sec += 1

    def check(self, final: bool = False) -> None:
        """Check the commands received up to CHECK_WINDOW + 0.1 s ago; drop what is no longer needed."""
        from .closed_loop import check_commands

        horizon = time.monotonic() - (0.0 if final else CHECK_WINDOW + 0.1)
        ready = [c for c in self.commands if c.t <= horizon]
        cfg = self.config
        still = []
        for t, key, a in self.applied:
            base = self.base_by_stamp.get(key)
            if base is not None and a.shape == base[1].shape:
                self.pairs.append((t, np.clip(base[1] + a, cfg.command_min, cfg.command_max)))
            elif t > horizon - CHECK_WINDOW:
                still.append((t, key, a))
        self.applied = still
        self.pairs.sort(key=lambda p: p[0])
        if ready:
            kinds: list = []
            res = check_commands(ready, self.bases, self.joints, self.config, self.config.base_stale_behavior,
                               window=CHECK_WINDOW, kinds=kinds)
            for k in ("non_finite", "out_of_limits"):
                self.violations[k] += res[k]
            # Commands not within g * eps of any base action the recorder saw: confirm them
            # against the exact pairs (applied residual + the base action of the same stamp).
            pair_t = np.array([p[0] for p in self.pairs])
            for c, kind in zip(ready, kinds):
                if kind not in ("residual_bound", "unbased"):
                    continue
                lo, hi = np.searchsorted(pair_t, c.t - CHECK_WINDOW), np.searchsorted(pair_t, c.t + CHECK_WINDOW)
                if any(np.allclose(self.pairs[k][1], c.values, atol=1e-6) for k in range(lo, hi)):
                    self.verified_by_pair += 1
                else:
                    self.unverified += 1
            if len(self.examples) < 5:
                self.examples += [e for e in res["examples"] if e["kind"] in ("non_finite", "out_of_limits")][:5]
        self.commands = [c for c in self.commands if c.t > horizon]
        keep = horizon - CHECK_WINDOW - 0.1
        self.bases = [b for b in self.bases if b.t > keep]
        self.pairs = [p for p in self.pairs if p[0] > keep]
        self.base_by_stamp = {k: v for k, v in self.base_by_stamp.items() if v[0] > keep}

    def second(self, t: float) -> None:
        self.late_series.append((t, self._late_sec, self._cmd_sec))
        self._late_sec = self._cmd_sec = 0


def run(args) -> int:
    if not (args.minutes > 0 and math.isfinite(args.minutes)):
        print(f"soak: --minutes: expected a number > 0, found {args.minutes}", file=sys.stderr)
        return 2
    if not (1.0 <= args.rate <= 1000.0):
        print(f"soak: --rate: expected 1 to 1000 Hz (mujoco_sim's control_rate_hz range), found {args.rate}",
              file=sys.stderr)
        return 2
    doc = soak(args.minutes * 60.0, args.rate, warmup=args.warmup, max_growth_mib=args.max_growth_mib,
               max_growth_pct=args.max_growth_pct, log_dir=args.log_dir or None)
    _print(doc)
    if args.plot:
        plot(doc, args.plot)
        print(f"plot written to {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
        print(f"results written to {args.json}")
    return 0 if doc["passed"] else 1


def soak(duration: float, rate: float, warmup: float | None = None, max_growth_mib: float = 5.0,
         max_growth_pct: float = 10.0, log_dir: str | None = None, progress=None) -> dict:
    import rclpy

    from .closed_loop import load_params, mixer_config, node_params
    from .graph import Graph, NodeSpec

    say = progress or (lambda m: print(f"[soak] {m}", flush=True))
    if warmup is None:
        warmup = min(max(0.2 * duration, 5.0), 60.0)
    work = Path(tempfile.mkdtemp(prefix="residual_soak_"))
    own = not rclpy.ok()
    if own:
        rclpy.init()
    failures: list = []
    try:
        params_file, model = _write_files(work, rate)
        params = load_params(params_file)
        joints = list(node_params(params, "residual_mixer")["joints"])
        config = mixer_config(params)
        plant = str(share_path("config", "plants", "real.yaml"))
        specs = [
            NodeSpec("base_controller", [params_file]),
            NodeSpec("residual_policy", [params_file]),
            NodeSpec("residual_mixer", [params_file]),
            NodeSpec("perception", [], {"plant_file": plant}),
            NodeSpec("reference_publisher", [str(share_path("config", "reference.yaml"))]),
        ]
        rec = Recorder(joints, config, rate)
        graph = Graph(specs, log_dir=log_dir or str(work / "logs"))
        try:
            topics = ["base_action", "residual_action", "commands", "perception", "reference"]
            deadline = time.monotonic() + 120.0
            while not all(rec.node.count_publishers(t) for t in topics):
                graph.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError("graph not ready after 120 s")
                rclpy.spin_once(rec.node, timeout_sec=0.05)
            graph.start(NodeSpec("mujoco_sim", [], {
                "plant_file": plant, "mode": "realtime", "publish_clock": False,
                "control_rate_hz": float(rate), "physics_rate_hz": max(1000.0, float(rate)),
                "initial_positions": [0.3, 1.2]}))
            # Start measuring once commands flow.
            deadline = time.monotonic() + 120.0
            while rec.n_commands < 10:
                graph.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError("no command within 120 s of starting the simulator")
                rclpy.spin_once(rec.node, timeout_sec=0.05)
            say(f"{len(specs) + 1} nodes up, {rate:g} Hz, running {duration:.0f} s")
            pids = {k: p.pid for k, p in graph.processes.items()}
            t0 = time.monotonic()
            series = {"t": [], "rss_mib": {k: [] for k in pids}, "cpu_share": {k: [] for k in pids},
                      "late": [], "commands": []}
            last_cpu = {k: read_cpu_ticks(pid) for k, pid in pids.items()}
            last_t = t0
            next_sample = t0 + 1.0
            next_check = t0 + 2.0
            next_report = t0 + 30.0
            rec.n_commands = rec.n_late = 0
            rec.lateness.clear()
            rec._late_sec = rec._cmd_sec = 0
            while True:
                rclpy.spin_once(rec.node, timeout_sec=0.005)
                now = time.monotonic()
                if now >= next_sample and now - last_t >= 0.9:
                    dt = now - last_t
                    series["t"].append(round(now - t0, 3))
                    for k, pid in pids.items():
                        rss = read_rss_kib(pid)
                        cpu = read_cpu_ticks(pid)
                        series["rss_mib"][k].append(None if rss is None else round(rss / 1024.0, 3))
                        share = None if cpu is None or last_cpu[k] is None else (cpu - last_cpu[k]) / CLK_TCK / dt
                        series["cpu_share"][k].append(None if share is None else round(share, 4))
                        last_cpu[k] = cpu
                    rec.second(now - t0)
                    series["late"].append(rec.late_series[-1][1])
                    series["commands"].append(rec.late_series[-1][2])
                    last_t = now
                    next_sample = now + 1.0
                if now >= next_check:
                    rec.check()
                    next_check = now + 2.0
                    try:
                        graph.check_alive()
                    except RuntimeError as exc:
                        failures.append(f"a node died: {str(exc)[:800]}")
                        break
                if now >= next_report:
                    say(f"{now - t0:5.0f}/{duration:.0f} s: {rec.n_commands} commands, {rec.n_late} late, "
                        f"{sum(rec.violations.values())} violations")
                    next_report += 30.0
                if now - t0 >= duration:
                    break
            elapsed = time.monotonic() - t0
            rec.check(final=True)
        finally:
            graph.stop()
            rec.node.destroy_node()
    finally:
        if own:
            rclpy.try_shutdown()
        shutil.rmtree(work, ignore_errors=True)

    t = np.asarray(series["t"], float)
    nodes = {}
    for k in pids:
        rss = np.asarray([np.nan if v is None else v for v in series["rss_mib"][k]], float)
        cpu = np.asarray([np.nan if v is None else v for v in series["cpu_share"][k]], float)
        g = memory_growth(t[np.isfinite(rss)], rss[np.isfinite(rss)], warmup)
        nodes[k] = {"pid": pids[k], "rss": g, "rss_max_mib": float(np.nanmax(rss)) if rss.size else None,
                    "cpu_share_mean": round(float(np.nanmean(cpu)), 4) if cpu.size else None,
                    "cpu_share_max": round(float(np.nanmax(cpu)), 4) if cpu.size else None}
        if g["growth_mib"] > max_growth_mib or g["growth_pct"] > max_growth_pct:
            failures.append(f"{k}: memory grew {g['growth_mib']:.2f} MiB ({g['growth_pct']:.1f} %) from the first "
                            f"to the last third (limits {max_growth_mib} MiB, {max_growth_pct} %)")
    lat = np.asarray(rec.lateness, float)
    total_viol = int(sum(rec.violations.values()))
    if total_viol:
        failures.append(f"{total_viol} command violations: {rec.violations}")
    if rec.n_commands == 0:
        failures.append("no command received")
    doc = {
        "rate_hz": rate, "period_s": 1.0 / rate, "duration_s": round(elapsed, 1), "warmup_s": warmup,
        "driver": "mujoco_sim realtime mode (wall clock)",
        "model": f"synthetic linear model declared at {rate:g} Hz (the shipped model is trained for 100 Hz)",
        "commands": rec.n_commands, "achieved_rate_hz": round(rec.n_commands / elapsed, 1) if elapsed else 0.0,
        "late": {"threshold_s": 1.0 / rate, "count": rec.n_late,
                 "share": round(rec.n_late / max(len(lat), 1), 4),
                 "p50_s": _q(lat, 50), "p99_s": _q(lat, 99), "max_s": _q(lat, 100)},
        "violations": total_viol, "violation_breakdown": rec.violations, "violation_examples": rec.examples,
        "commands_verified_by_stamp_pair": rec.verified_by_pair,
        "commands_unverified": rec.unverified,
        "memory_limits": {"growth_mib": max_growth_mib, "growth_pct": max_growth_pct},
        "nodes": nodes, "series": series, "failures": failures, "passed": not failures,
    }
    return doc


def _q(x: np.ndarray, q: float) -> float | None:
    return None if x.size == 0 else round(float(np.percentile(x, q)), 5)


def _print(doc: dict) -> None:
    print()
    print(f"soak: {doc['duration_s']:.0f} s at {doc['rate_hz']:g} Hz ({doc['driver']}); "
          f"{doc['commands']} commands = {doc['achieved_rate_hz']:.0f} Hz achieved")
    late = doc["late"]
    print(f"late (> {late['threshold_s'] * 1e3:.1f} ms): {late['count']} ({100 * late['share']:.2f} %); lateness "
          f"p50 {_ms(late['p50_s'])}, p99 {_ms(late['p99_s'])}, max {_ms(late['max_s'])}")
    print(f"{'node':22} {'RSS first [MiB]':>16} {'RSS last [MiB]':>15} {'growth [MiB]':>13} {'CPU mean':>9} "
          f"{'CPU max':>8}")
    for k, n in doc["nodes"].items():
        r = n["rss"]
        print(f"{k:22} {_f(r['first_third_mib']):>16} {_f(r['last_third_mib']):>15} {_f(r['growth_mib']):>13} "
              f"{_pct(n['cpu_share_mean']):>9} {_pct(n['cpu_share_max']):>8}")
    print(f"violations: {doc['violations']} (applied residual checked on every step received; "
          f"{doc['commands_unverified']} commands whose base action the recorder dropped could not be paired)")
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
    cmds = np.maximum(np.asarray(s["commands"], float), 1)
    axes[2].plot(t, 100 * late / cmds, color="tab:red", label=f"late (> {doc['period_s'] * 1e3:.1f} ms) [%]")
    axes[2].plot(t, 100 * np.asarray(s["commands"], float) / doc["rate_hz"], color="tab:blue",
                 label="commands / expected [%]")
    axes[2].set_ylabel("%")
    axes[2].set_xlabel("time [s]")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"soak at {doc['rate_hz']:g} Hz, {doc['duration_s']:.0f} s: "
                 f"{'PASSED' if doc['passed'] else 'FAILED'}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
