"""Solve time per call of the mpc base controller against a floor measured in the same run.

    residual-control mpc-bench [--robot planar2 --robot fer] [--horizon 10 --horizon 20] [--seconds S] [--json OUT]

For each robot (its params file with ``controller_type: mpc``) and horizon, the MPC runs in closed
loop on the robot's nominal MuJoCo plant (sim/plant.py, PlantParams at the nominal payload) along the
robot's demo reference (robot.yaml ``reference``) for ``--seconds`` at the params file's control rate
(100 Hz): every period the controller's full call (``compute``: the nominal model's M(q) and bias, the
QP's update and solve, the clip) is timed with ``time.perf_counter``, and the solve alone
(``last_solve_time``) and OSQP's iterations are recorded. The floor, measured on the same states in
the same run, is the pd_gravity base's call (one gravity evaluation and a PD law): the cheapest
model-based base. The table gives p50 and p99 of each, the ratio of the MPC's p50 to the floor's p50,
the fallbacks (periods on the PD plus gravity law: failed, infeasible or over ``mpc.solve_time_budget``)
and the tracking RMSE of the run, and the machine's load average before and after (p99 and the
over-budget fallbacks measure the machine's load as much as the solver on a shared machine). The
budget stays at the params file's value (``--budget`` changes it).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

DEFAULT_ROBOTS = ("planar2", "fer")
DEFAULT_HORIZONS = (10, 20)


def _params(robot_spec, horizon: int, budget: float | None) -> dict:
    from residual_control import params_file

    p = params_file.node_params(params_file.load(robot_spec.params), "base_controller")
    model = p.pop("model", None)
    if isinstance(model, dict):
        p.update({f"model.{k}": v for k, v in model.items()})
    p.pop("mpc", None)
    p["controller_type"] = "mpc"
    p["mpc.horizon"] = int(horizon)
    if budget is not None:
        p["mpc.solve_time_budget"] = float(budget)
    return p


def _percentiles(x) -> dict:
    a = np.asarray(x, dtype=float) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(np.max(a))}


def bench_case(robot: str, horizon: int, seconds: float, budget: float | None = None) -> dict:
    """One robot and horizon: the MPC in closed loop on the nominal plant, the floor on the same states."""
    from residual_control.core.base_controllers import PDGravity, make_base_controller
    from residual_control.robot.folder import load_robot
    from residual_control.robot.nominal import nominal_model
    from residual_control.sim.plant import MujocoPlant, PlantParams
    from residual_control.sim.trajectories import make_trajectory
    from residual_control.training.evaluate import load_reference_spec

    spec = load_robot(robot)
    p = _params(spec, horizon, budget)
    model = nominal_model(p)
    mpc = make_base_controller(p, model)
    floor = PDGravity(p["joints"], p["kp"], p["kd"], p["command_min"], p["command_max"], model)
    traj = make_trajectory(load_reference_spec(str(spec.reference)))
    plant = MujocoPlant(PlantParams(payload_mass=spec.payload_mass), robot=spec)
    q0, _, _ = traj.sample(0.0)
    plant.reset(q0, np.zeros(len(q0)))
    dt = 0.01
    steps = int(round(seconds / dt))
    t_mpc, t_solve, t_floor, iters, errs = [], [], [], [], []
    for i in range(steps):
        t = i * dt
        q, qd = plant.measure()
        q_ref, qd_ref, _ = traj.sample(t)
        s = time.perf_counter()
        floor.compute(q, qd, q_ref, qd_ref, t)
        t_floor.append(time.perf_counter() - s)
        s = time.perf_counter()
        tau = mpc.compute(q, qd, q_ref, qd_ref, t)
        t_mpc.append(time.perf_counter() - s)
        t_solve.append(mpc.last_solve_time)
        iters.append(mpc.last_iterations)
        plant.step(tau, dt)
        errs.append(traj.sample(t + dt)[0] - plant.q)
    mpc_p, floor_p = _percentiles(t_mpc), _percentiles(t_floor)
    return {"robot": spec.name, "joints": len(spec.joints), "horizon": horizon, "calls": steps,
            "mpc_call": mpc_p, "qp_solve": _percentiles(t_solve), "floor_pd_gravity_call": floor_p,
            "ratio_p50": mpc_p["p50_ms"] / floor_p["p50_ms"], "ratio_p99": mpc_p["p99_ms"] / floor_p["p99_ms"],
            "iterations_p50": float(np.percentile(iters, 50)), "iterations_p99": float(np.percentile(iters, 99)),
            "fallbacks": mpc.fallbacks, "solve_time_budget_ms": mpc.solve_time_budget * 1e3,
            "rmse_rad": float(np.sqrt(np.mean(np.square(errs))))}


def graph_case(robot: str, base: str, horizon: int, rate_hz: float, seconds: float, log_dir: str = "") -> dict:
    """Drive the base_controller node (its own process) with joint states at ``rate_hz`` for ``seconds``.

    The harness publishes a reference (home + 0.05 rad) and ``joint_states`` (home + 0.05 sin(pi t) rad,
    stamped with the send time) at the rate, spinning between sends, and matches each ``base_action`` to its joint state
    by stamp: ``delivered`` is the share of joint states answered, the latency the answer's arrival
    minus the send time (host clock). The rate is sustained when delivered >= 0.99 and the p99 latency
    is under one period.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState

    from residual_control.nodes.qos import CONTROL_QOS
    from residual_control.robot.folder import load_robot

    from .graph import Graph, NodeSpec

    spec = load_robot(robot)
    params = {"controller_type": base}
    if base == "mpc":
        params["mpc.horizon"] = int(horizon)
    joints = list(spec.joints)
    home = [float(x) for x in spec.home] if spec.home is not None else [0.0] * len(joints)
    if not rclpy.ok():
        rclpy.init()
    node = rclpy.create_node("mpc_bench_driver")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    arrivals: dict[int, int] = {}

    def on_action(msg) -> None:
        arrivals[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = time.time_ns()

    js_pub = node.create_publisher(JointState, "joint_states", CONTROL_QOS)
    ref_pub = node.create_publisher(JointState, "reference", CONTROL_QOS)
    node.create_subscription(JointState, "base_action", on_action, CONTROL_QOS)
    js = JointState(name=joints, position=home, velocity=[0.0] * len(joints))
    ref = JointState(name=joints, position=[h + 0.05 for h in home], velocity=[0.0] * len(joints))

    t0 = time.time_ns()

    def send() -> int:
        t = time.time_ns()
        w = 2 * np.pi * 0.5 * (t - t0) / 1e9  # the state moves (0.05 rad at 0.5 Hz): the QP changes every call
        js.position = [h + 0.05 * float(np.sin(w)) for h in home]
        js.velocity = [0.05 * np.pi * float(np.cos(w))] * len(home)
        js.header.stamp.sec, js.header.stamp.nanosec = divmod(t, 1_000_000_000)
        ref.header.stamp = js.header.stamp
        ref_pub.publish(ref)
        js_pub.publish(js)
        return t

    def drive(rate: float, duration: float) -> list[int]:
        sent, period, pc = [], 1.0 / rate, time.perf_counter
        start = nxt = pc()
        while pc() - start < duration:
            while (rem := nxt - pc()) > 0:
                ex.spin_once(timeout_sec=rem)
            sent.append(send())
            nxt += period
            if pc() - nxt > 5 * period:  # far behind: skip rather than burst
                nxt = pc()
        return sent

    out = {"robot": spec.name, "base": base, "horizon": horizon if base == "mpc" else None, "rate_hz": rate_hz}
    with Graph([NodeSpec("base_controller", [str(spec.params)], params)], log_dir=log_dir or None) as graph:
        deadline = time.monotonic() + 60.0
        while not arrivals and time.monotonic() < deadline:
            drive(50.0, 0.2)
            graph.check_alive()
        if not arrivals:
            out["error"] = "no base_action within 60 s"
        else:
            drive(rate_hz, 1.0)  # warm-up
            arrivals.clear()
            sent = drive(rate_hz, seconds)
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                ex.spin_once(timeout_sec=0.01)
            lat = np.array([arrivals[t] - t for t in sent if t in arrivals], dtype=float) / 1e3  # us
            period_us = 1e6 / rate_hz
            delivered = len(lat) / max(1, len(sent))
            out.update({"sent": len(sent), "sent_rate_hz": len(sent) / seconds, "delivered": delivered,
                        "latency_p50_us": float(np.percentile(lat, 50)) if len(lat) else None,
                        "latency_p99_us": float(np.percentile(lat, 99)) if len(lat) else None})
            out["sustained"] = bool(delivered >= 0.99 and len(lat) and np.percentile(lat, 99) < period_us)
    ex.shutdown(timeout_sec=1.0)
    node.destroy_node()
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", action="append", default=None,
                   help=f"robot folder or name (repeatable; default: {', '.join(DEFAULT_ROBOTS)})")
    p.add_argument("--horizon", action="append", type=int, default=None,
                   help=f"MPC horizon in steps (repeatable; default: {', '.join(map(str, DEFAULT_HORIZONS))})")
    p.add_argument("--seconds", type=float, default=10.0, help="closed-loop seconds per case (100 Hz)")
    p.add_argument("--budget", type=float, default=None,
                   help="mpc.solve_time_budget in s (default: the params file's)")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--graph", default="", metavar="RATES",
                   help="also drive the base_controller node at these comma-separated rates in Hz (e.g. "
                        "100,250,500,1000), mpc and pd_gravity (the floor), per robot and horizon; needs ROS 2")
    p.add_argument("--graph-seconds", type=float, default=3.0, help="measured seconds per graph rate")


def run(args) -> int:
    import os

    rows = []
    load_before = os.getloadavg()
    for robot in args.robot or DEFAULT_ROBOTS:
        for horizon in args.horizon or DEFAULT_HORIZONS:
            rows.append(bench_case(robot, horizon, args.seconds, args.budget))
    head = (f"{'robot':8} {'H':>3} {'mpc p50':>9} {'mpc p99':>9} {'qp p50':>8} {'qp p99':>8} {'floor p50':>9} "
            f"{'x floor':>8} {'iter p50/p99':>12} {'fallbk':>6} {'rmse':>8}")
    print("ms per call; floor: the pd_gravity base's call on the same states")
    print(head)
    for r in rows:
        print(f"{r['robot']:8} {r['horizon']:>3} {r['mpc_call']['p50_ms']:9.3f} {r['mpc_call']['p99_ms']:9.3f} "
              f"{r['qp_solve']['p50_ms']:8.3f} {r['qp_solve']['p99_ms']:8.3f} "
              f"{r['floor_pd_gravity_call']['p50_ms']:9.4f} {r['ratio_p50']:8.1f} "
              f"{r['iterations_p50']:5.0f}/{r['iterations_p99']:<6.0f} {r['fallbacks']:>6} {r['rmse_rad']:8.5f}")
    graph = []
    rates = [float(r) for r in args.graph.split(",") if r.strip()] if args.graph else []
    if rates:
        print("\nnode graph: base_controller driven with joint states (delivered share, latency p50/p99 us)")
        for robot in args.robot or DEFAULT_ROBOTS:
            cases = [("pd_gravity", None)] + [("mpc", h) for h in args.horizon or DEFAULT_HORIZONS]
            for base, horizon in cases:
                for rate in rates:
                    g = graph_case(robot, base, horizon or 0, rate, args.graph_seconds)
                    graph.append(g)
                    if "error" in g:
                        print(f"{robot:8} {base:10} H={horizon} {rate:6.0f} Hz: {g['error']}")
                        continue
                    print(f"{robot:8} {base:10} H={str(horizon):4} {rate:6.0f} Hz: sent {g['sent_rate_hz']:7.1f} Hz, "
                          f"delivered {g['delivered']:.3f}, latency {g['latency_p50_us']:.0f}/"
                          f"{g['latency_p99_us']:.0f} us, sustained {g['sustained']}")
    load = [round(x, 2) for x in (*load_before, *os.getloadavg())]
    print(f"load average (1, 5, 15 min) before {load[:3]}, after {load[3:]} on {os.cpu_count()} CPUs: "
          "p99 and the fallbacks over the budget grow with the load of a shared machine")
    out = {"argv": sys.argv, "python": platform.python_version(), "machine": platform.machine(),
           "cpus": os.cpu_count(), "load_average_before_after": load, "seconds": args.seconds, "rows": rows,
           "graph": graph}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="residual-control mpc-bench", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
