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
and the tracking RMSE of the run. The budget stays at the params file's value (``--budget`` changes it).
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", action="append", default=None,
                   help=f"robot folder or name (repeatable; default: {', '.join(DEFAULT_ROBOTS)})")
    p.add_argument("--horizon", action="append", type=int, default=None,
                   help=f"MPC horizon in steps (repeatable; default: {', '.join(map(str, DEFAULT_HORIZONS))})")
    p.add_argument("--seconds", type=float, default=10.0, help="closed-loop seconds per case (100 Hz)")
    p.add_argument("--budget", type=float, default=None,
                   help="mpc.solve_time_budget in s (default: the params file's)")
    p.add_argument("--json", default=None, help="write the results as JSON here")


def run(args) -> int:
    rows = []
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
    out = {"argv": sys.argv, "python": platform.python_version(),
           "machine": platform.machine(), "seconds": args.seconds, "rows": rows}
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
