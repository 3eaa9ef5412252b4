"""`residual-control demo`: whether the residual beats its base on a shifted plant and survives its own death.

Three trials on the same trajectory, each a fresh graph of separate
processes over DDS (mujoco_sim, reference_publisher, perception,
base_controller, residual_policy, residual_mixer):

1. ``base``: the base controller alone (residual_gain 0),
2. ``residual``: base plus the shipped residual,
3. ``residual_fault``: as 2, but residual_policy is killed (-9) mid-run,
   restarted, and later perception is switched off.

Prints a table, writes a PNG plot (``--plot``) and JSON (``--json``). Each trial
reports the roughness of the commands the simulator received in the measured
window (``roughness``: RMS per-period change and high-frequency share per
joint, residual_control/core/roughness.py).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from ..paths import default_model, default_params_file, share_path
from .robot_args import add_robot_argument, robot_of

TRIALS = ("base", "residual", "residual_fault")
BASE_CONTROLLERS = ("pd_gravity", "computed_torque", "pid", "mpc")
#: (params file, residual) shipped per base controller of the built-in arm (models/README.md).
SHIPPED_BASES = {"pd_gravity": (("config", "residual_control.yaml"), ("models", "residual_bc.onnx")),
                 "mpc": (("config", "residual_control_mpc.yaml"), ("models", "residual_bc_mpc.onnx"))}


def base_controller_files(base: str, robot, params_file: str, model: str, folder: str) -> tuple[str, str, str]:
    """Return (params file, model or '', note) that run ``base`` (``--base-controller``).

    The built-in arm ships a params file and a residual for pd_gravity and mpc; any other base (or robot)
    runs on the robot's params file with ``controller_type`` set in a copy written to ``folder``, and has
    no shipped residual ('' unless ``model`` is given: the base trial alone).
    """
    import yaml

    from .. import params_file as pf

    if robot.name == "planar2" and base in SHIPPED_BASES and not params_file:
        files, residual = SHIPPED_BASES[base]
        return str(share_path(*files)), model or str(share_path(*residual)), ""
    source = params_file or str(robot.params or default_params_file())
    data = pf.load(source)
    if pf.node_params(data, "base_controller").get("controller_type", "pd_gravity") == base:
        shipped = model or (str(robot.model) if base == "pd_gravity" and robot.model else "")
        return source, shipped, ""
    data = dict(data)
    section = dict(data.get("base_controller") or {})
    section["ros__parameters"] = {**dict(section.get("ros__parameters") or {}), "controller_type": base}
    data["base_controller"] = section
    out = Path(folder) / f"params_{base}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    note = "" if model else f"no residual shipped for the {base} base of {robot.name}: the base trial only"
    return str(out), model, note


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_robot_argument(p)
    p.add_argument("--plant", default="", help="plant YAML (default: the robot's plant, config/plants/real.yaml)")
    p.add_argument("--params-file", default="",
                   help="ROS 2 params file (default: the robot's, config/residual_control.yaml)")
    p.add_argument("--model", default="", help="ONNX residual (default: the robot's, models/residual_bc.onnx)")
    p.add_argument("--base-controller", default="", choices=("",) + BASE_CONTROLLERS,
                   help="run the graph with this base controller (controller_type) and the residual shipped for it: "
                        "mpc on the built-in arm: config/residual_control_mpc.yaml, models/residual_bc_mpc.onnx; "
                        "a base without a shipped residual runs the base trial only (unless --model is given)")
    p.add_argument("--duration", type=float, default=10.0, help="measured sim seconds per trial (default 10)")
    p.add_argument("--settle", type=float, default=5.0,
                   help="sim seconds before the measured window (start-up: discovery, first inferences)")
    p.add_argument("--json", default="", help="write the results as JSON to this file")
    p.add_argument("--plot", default="demo.png", help="write the plot to this PNG ('' for none)")
    p.add_argument("--trials", default=",".join(TRIALS), help=f"comma-separated subset of {','.join(TRIALS)}")
    p.add_argument("--log-dir", default="", help="keep the nodes' logs in this folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", default="", metavar="DIR",
                   help="record each trial as a rosbag2 bag DIR/<trial> (residual_recorder; docs/logs.md)")
    p.add_argument("--record-storage", default="mcap", choices=("mcap", "sqlite3"),
                   help="storage of the recorded bags (default mcap)")


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def run_trial(name: str, args, settings_kwargs: dict, joints, config) -> tuple[dict, dict]:
    from .closed_loop import ClosedLoop, LoopSettings, analyse, series

    settings = LoopSettings(**settings_kwargs, residual_gain=0.0 if name == "base" else None)
    if args.log_dir:
        settings.log_dir = str(Path(args.log_dir) / name)
    if getattr(args, "record", ""):
        settings.bag_path = str(Path(args.record) / name)
        settings.bag_storage = getattr(args, "record_storage", "mcap")
    t0 = settings.settle
    span = settings.duration
    plan = []
    if name == "residual_fault":
        # The restarted process takes seconds of wall (and so of simulated) time to load on a busy
        # machine before the mixer ramps it back in: the restart is early enough that the mixer is
        # nominal again before perception goes off.
        plan = [(t0 + 0.10 * span, "kill"), (t0 + 0.20 * span, "restart"), (t0 + 0.85 * span, "perception_off")]
    fault: dict = {}
    with ClosedLoop(settings, joints, name=f"demo_probe_{name}",
                    progress=lambda m: _say(f"{name:>14}: {m}")) as loop:
        probe = loop.probe

        def on_tick(t: float) -> None:
            while plan and t >= plan[0][0]:
                _, action = plan[0]
                if action == "kill":
                    # Kill a healthy residual: only once the mixer is nominal.
                    probe.drain()
                    if probe.mode != "nominal":
                        return
                    js = probe.rec.joint_states
                    # A lower bound of the sim time at the kill: the newest joint state seen.
                    t = js[-1].stamp if js else probe.ros_now()
                    fault["kill_sim"] = t
                    loop.kill("residual_policy")
                    fault["kill_wall"] = time.monotonic()
                    _say(f"{name:>14}: killed residual_policy (-9) at {t:.2f} s sim time")
                elif action == "restart":
                    loop.restart("residual_policy")
                    fault["restart_sim"] = t
                    _say(f"{name:>14}: restarted residual_policy at {t:.2f} s")
                elif action == "perception_off":
                    probe.drain()
                    if probe.mode != "nominal":
                        return
                    t = loop.sim_time_now()
                    fault["perception_off_sim"] = t
                    ok, reason = probe.set_remote_parameter("perception", "enabled", False)
                    if not ok:
                        raise RuntimeError(f"could not stop perception: {reason}")
                    _say(f"{name:>14}: perception switched off at {t:.2f} s")
                plan.pop(0)

        run = loop.run(on_tick)
        result = analyse(run, joints, config)
        result["roughness"] = command_roughness(run.sink_record(), joints, t0, t0 + span,
                                                1.0 / settings.control_rate_hz)
        result.update(envelope_numbers(probe.rec.diagnostics, settings.settle, settings.settle + span))
        if name == "residual_fault":
            if "kill_sim" in fault:
                # The last residual the killed process published is also before the kill:
                # the later of the two bounds the kill time from below, so the latency
                # measured from it can only be longer than the real one.
                before = [r.stamp for r in probe.rec.residual
                          if r.stamp is not None and r.stamp < fault.get("restart_sim", float("inf"))]
                if before:
                    fault["kill_sim"] = max(fault["kill_sim"], max(before))
                # The sim's own record: the newest state it had published when the process was
                # dead, exact to a period whatever the probe's lag (states after it got no residual).
                from .closed_loop import sink_sim_time_at
                exact = sink_sim_time_at(run.sink_record(), fault["kill_wall"])
                if exact is not None:
                    fault["kill_sim"] = max(fault["kill_sim"], exact)
            result.update(_fault_numbers(probe.rec.mixer_modes, fault))
        return result, series(run, joints)


def window_commands(record, n_joints: int, t0: float, t1: float):
    """Return the mixer's command of each control period of [t0, t1] (sim s), as the simulator received them.

    One row per lockstep window stamped in [t0, t1]: the last command received in it (the one the
    plant held from then on); NaN where the window received none, or one of another length (a period
    without a command: :func:`residual_control.core.roughness.roughness` drops it).
    """
    import numpy as np

    rows = []
    for w in record.windows:
        if not t0 <= w.t_ns * 1e-9 <= t1:
            continue
        c = w.commands[-1] if w.commands else None
        rows.append(c if c is not None and c.shape == (n_joints,) else np.full(n_joints, np.nan))
    return np.asarray(rows, dtype=float).reshape(len(rows), n_joints)


def command_roughness(record, joints, t0: float, t1: float, period: float) -> dict:
    """Roughness (core/roughness.py) of the commands the simulator received in [t0, t1], per joint."""
    from ..core.roughness import roughness

    return roughness(window_commands(record, len(joints), t0, t1), period)


def envelope_numbers(diagnostics, t0: float, t1: float) -> dict:
    """Envelope fallbacks (out_of_envelope trips of the policy) in the window [t0, t1] and before it.

    From the policy's /diagnostics (``envelope``, ``envelope_trip_times``: the node-clock
    times of its latest trips); a restarted policy starts a new list, so the union is taken.
    """
    times, state = set(), "no policy diagnostics"
    for _t, status in diagnostics:
        values = {kv.key: kv.value for kv in status.values}
        if "envelope_trip_times" not in values:
            continue
        state = values.get("envelope", state)
        times.update(float(x) for x in json.loads(values["envelope_trip_times"]))
    return {"envelope": state.split(" ")[0],
            "envelope_fallbacks": sum(1 for x in times if t0 <= x <= t1),
            "envelope_fallbacks_startup": sum(1 for x in times if x < t0)}


def _first_mode_after(mixer_modes, t: float, wanted: str) -> float | None:
    """Stamp (mixer clock) of the first report of ``wanted`` mode after sim time t."""
    return next((stamp for stamp, mode in sorted(mixer_modes) if stamp >= t and mode == wanted), None)


def _mode_at(mixer_modes, t: float) -> str | None:
    """Return the mixer's mode at sim time t: its last report (stamped when made) at or before t."""
    before = [(stamp, mode) for stamp, mode in sorted(mixer_modes) if stamp <= t]
    return before[-1][1] if before else None


def _fault_numbers(mixer_modes, fault: dict) -> dict:
    """Latencies on the simulated clock: the mixer's transition stamp minus the fault's time.

    The kill waits for the probe to see the mixer nominal, but the probe's view
    can lag: when the mixer's own reports show it had already left nominal
    before the kill, the fallback happened before the fault and its latency is 0.
    """
    out = {"fallback_latency_s": None, "recovered": False, "perception_fallback_latency_s": None}
    if "kill_sim" in fault:
        at_kill = _mode_at(mixer_modes, fault["kill_sim"])
        out["mode_at_kill"] = at_kill
        hit = _first_mode_after(mixer_modes, fault["kill_sim"], "fallback")
        if at_kill == "fallback":
            out["fallback_latency_s"] = 0.0
        elif hit is not None:
            out["fallback_latency_s"] = hit - fault["kill_sim"]
    if "restart_sim" in fault:
        end = fault.get("perception_off_sim", float("inf"))
        out["recovered"] = any(mode == "nominal" and fault["restart_sim"] < stamp < end
                               for stamp, mode in mixer_modes)
    if "perception_off_sim" in fault:
        hit = _first_mode_after(mixer_modes, fault["perception_off_sim"], "fallback")
        if hit is not None:
            out["perception_fallback_latency_s"] = hit - fault["perception_off_sim"]
    return out


def plot(path: str, data: dict, joints, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mode_level = {"nominal": 2, "recovering": 1, "fallback": 0, "base_fault": -1}
    n = len(joints)
    fig, axes = plt.subplots(n + 2, 1, figsize=(11, 2.4 * (n + 2)), sharex=True)
    colors = {"base": "tab:red", "residual": "tab:green", "residual_fault": "tab:purple"}
    for k, j in enumerate(joints):
        ax = axes[k]
        first = next(iter(data.values()))
        ax.plot(first["t"], first["q_ref"][:, k], "k--", lw=1.2, label="reference")
        for name, s in data.items():
            ax.plot(s["t"], s["q"][:, k], color=colors.get(name), lw=1.0, label=name)
        ax.set_ylabel(f"{j} [rad]")
        ax.legend(loc="upper right", fontsize=8, ncol=4)
    ax = axes[n]
    for name, s in data.items():
        if name == "base" or not len(s["t_applied"]):
            continue
        for k, j in enumerate(joints):
            ax.plot(s["t_applied"], s["applied"][:, k], lw=0.9, color=colors.get(name),
                    ls="-" if k == 0 else ":", label=f"{name} {j}")
    ax.set_ylabel("applied Δa [N m]")
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    ax = axes[n + 1]
    for name, s in data.items():
        if not s["modes"]:
            continue
        ts = [t for t, _ in s["modes"]] + [s["t"][-1] if len(s["t"]) else 0.0]
        ls = [mode_level.get(m, 0) for _, m in s["modes"]]
        ax.step(ts, ls + ls[-1:], where="post", color=colors.get(name), label=name)
    ax.set_yticks(list(mode_level.values()), list(mode_level.keys()))
    ax.set_ylabel("mixer mode")
    ax.set_xlabel("sim time [s]")
    ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def format_table(results: dict, joints, config) -> str:
    head = ["trial"] + [f"RMSE {j} [rad]" for j in joints] + [
        "RMSE [rad]", "max|Δa| [N m]", "fallback [s]", "kill→fallback [s]", "violations"]
    rows = []
    for name, r in results.items():
        lat = r.get("fallback_latency_s")
        rows.append([name] + [f"{r['rmse_per_joint'][j]:.4f}" for j in joints] + [
            f"{r['rmse']:.4f}", f"{r['max_abs_residual']:.2f}", f"{r['fallback_time_s']:.2f}",
            "-" if lat is None else f"{lat:.3f}", str(r["violations"])])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]
    return "\n".join(out)


def run(args) -> int:
    from .closed_loop import load_params, mixer_config, node_params

    try:
        robot = robot_of(args)
    except ValueError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    params_file = args.params_file or str(robot.params or default_params_file())
    plant = args.plant or str(robot.plant or share_path("config", "plants", "real.yaml"))
    model = args.model or str(robot.model or default_model())
    base = getattr(args, "base_controller", "")
    if base:
        import tempfile

        folder = tempfile.mkdtemp(prefix="demo_base_")
        params_file, model, note = base_controller_files(base, robot, args.params_file, args.model, folder)
        if not model:
            _say(note)
            args.trials = "base"
            model = str(robot.model or default_model())  # loaded by no trial: the base runs alone
        _say(f"base controller {base}: params file {params_file}")
    for what, path in (("params file", params_file), ("plant", plant), ("model", model)):
        if not os.path.isfile(path):
            print(f"demo: {what}: expected a file, found nothing at {path}", file=sys.stderr)
            return 2
    trials = [t.strip() for t in args.trials.split(",") if t.strip()]
    unknown = [t for t in trials if t not in TRIALS]
    if unknown:
        print(f"demo: --trials: expected names from {list(TRIALS)}, found {unknown}", file=sys.stderr)
        return 2
    if args.record:
        taken = [str(Path(args.record) / t) for t in trials if (Path(args.record) / t).exists()]
        if taken:
            print(f"demo: --record: expected no bag yet at {taken}, found existing paths", file=sys.stderr)
            return 2
    params = load_params(params_file)
    joints = list(node_params(params, "residual_mixer")["joints"])
    config = mixer_config(params)
    rate = float(node_params(params, "residual_policy").get("control_rate_hz", 100.0))
    settings = dict(params_file=params_file, plant_file=plant, model_path=model, settle=args.settle,
                    duration=args.duration, control_rate_hz=rate, seed=args.seed, robot=str(robot.root))
    _say(f"plant {plant}, model {model}, {len(trials)} trials of {args.settle + args.duration:g} s sim time")
    started = time.monotonic()
    results, data = {}, {}
    for name in trials:
        _say(f"trial {name}: starting the graph")
        res, ser = run_trial(name, args, settings, joints, config)
        results[name], data[name] = res, ser
        _say(f"trial {name}: RMSE {res['rmse']:.4f} rad, violations {res['violations']}"
             + (f", bag {Path(args.record) / name}" if args.record else ""))
    elapsed = time.monotonic() - started
    print()
    print(format_table(results, joints, config))
    print()
    summary = {}
    if "base" in results and "residual" in results:
        summary["rmse_ratio_residual_to_base"] = results["residual"]["rmse"] / results["base"]["rmse"]
        print(f"residual / base RMSE: {summary['rmse_ratio_residual_to_base']:.3f}")
    if "residual_fault" in results:
        bound = config.residual_timeout + 1.0 / rate
        summary["fallback_bound_s"] = bound
        lat = results["residual_fault"]["fallback_latency_s"]
        plat = results["residual_fault"]["perception_fallback_latency_s"]
        print(f"kill → fallback: {_fmt_s(lat)} (bound residual_timeout + one period = {bound:.3f} s); "
              f"recovered after restart: {results['residual_fault']['recovered']}; "
              f"perception off → fallback: {_fmt_s(plat)}")
    print("envelope fallbacks (out_of_envelope) in the measured window: "
          + ", ".join(f"{n} {r['envelope_fallbacks']}" for n, r in results.items())
          + "; during start-up: " + ", ".join(f"{n} {r['envelope_fallbacks_startup']}" for n, r in results.items()))
    steps = {name: r["transition_steps"]["fallback"] for name, r in results.items() if "transition_steps" in r}
    if steps:
        largest = {j: max(s["applied_residual"][j] for s in steps.values()) for j in joints}
        bound = next(iter(steps.values())).get("bound")
        summary["largest_transition_step"] = {"applied_residual": largest, "bound": bound,
                                              "command": {j: max(s["command"][j] for s in steps.values())
                                                          for j in joints},
                                              "fallback_transitions": sum(s["transitions"] for s in steps.values())}
        within = None if bound is None else all(largest[j] <= bound[j] + 1e-9 for j in joints)
        summary["largest_transition_step"]["within_bound"] = within
        print("largest applied-residual step at a fallback [N m per period]: "
              + ", ".join(f"{j} {largest[j]:.3f}" for j in joints)
              + ("" if bound is None else " (bound g·ε·period/fallback_ramp_time: "
                 + ", ".join(f"{j} {bound[j]:.3f}" for j in joints) + ")"))
    print(f"command roughness per joint ({', '.join(joints)}; RMS per-period change [N m], "
          f"share of the power above {next(iter(results.values()))['roughness']['hf_cutoff_hz']:g} Hz): "
          + "; ".join(f"{n} {_fmt_list(r['roughness']['rms_step'], 3)} N m, "
                      f"{_fmt_list(r['roughness']['hf_share'], 4)}" for n, r in results.items()))
    if "base" in results and "residual" in results:
        from ..core.roughness import ratio

        summary["roughness_ratio_residual_to_base"] = ratio(results["residual"]["roughness"],
                                                            results["base"]["roughness"])
        print("residual / base command roughness (RMS per-period change): "
              + _fmt_list(summary["roughness_ratio_residual_to_base"]["rms_step"], 2))
    total_violations = sum(r["violations"] for r in results.values())
    print(f"violations in all runs: {total_violations}; demo took {elapsed:.0f} s")
    if args.plot:
        plot(args.plot, data, joints, f"residual_control demo: {robot.name} on {Path(plant).name}")
        print(f"plot written to {args.plot}")
    if args.json:
        doc = {"robot": robot.name, "plant": plant, "model": model, "params_file": params_file,
               "base_controller": base or node_params(params, "base_controller").get("controller_type",
                                                                                      "pd_gravity"),
               "duration_s": args.duration,
               "runs": results, "summary": summary, "elapsed_s": elapsed}
        Path(args.json).write_text(json.dumps(doc, indent=2, default=_json_default))
        print(f"results written to {args.json}")
    bumpless = summary.get("largest_transition_step", {}).get("within_bound")
    if bumpless is False:
        print("FAILED: an applied-residual step at a fallback exceeds g·ε·period/fallback_ramp_time "
              "(not bumpless)")
    return 0 if total_violations == 0 and bumpless is not False else 1


def _fmt_list(values, digits: int) -> str:
    return "[" + ", ".join("-" if v is None else f"{v:.{digits}f}" for v in values) + "]"


def _fmt_s(x) -> str:
    return "not seen" if x is None else f"{x:.3f} s"


def _json_default(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
    except ImportError:
        pass
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
