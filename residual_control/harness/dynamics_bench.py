"""Time per call of the nominal dynamics backends (residual_control.robot.dynamics) against a floor.

    python -m residual_control.harness.dynamics_bench [--description FILE [--joints a,b,..]] [--json OUT]

Measures ``gravity_torque``, ``inverse_dynamics`` and ``mass_matrix`` of every installed backend
(MuJoCo always, Pinocchio when ``pinocchio`` imports) on one arm: by default a random 7-joint serial
chain drawn from ``--seed`` (residual_control.harness.chains), or the description given. Next to the
wrappers it times the bare library calls they make (what the wrapper's argument checks and index maps
add is the gap) and a floor measured in the same run: a 7x7 numpy matrix-vector product, the cheapest
thing a model-based controller does per step anyway.

Method: the cases run round-robin in blocks of ``--block`` calls (so a load change on a shared machine
hits every case alike), over states drawn inside the joint limits; the time per call of a block is its
duration over its calls; the table gives the median and 90th percentile over ``--blocks`` blocks, and
the median's ratio to the floor's. It also reports the largest difference between the backends.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np


def _chain_description(seed: int, n: int, folder: Path) -> Path:
    from residual_control.harness.chains import random_chain_urdf

    path = folder / f"random_chain_{n}dof_seed{seed}.urdf"
    path.write_text(random_chain_urdf(np.random.default_rng(seed), n))
    return path


def _raw_cases(compiled, dyn_mj, dyn_pin) -> Dict[str, Callable]:
    """Bare library calls with the wrappers' arguments (states set, no checks, no index maps)."""
    import mujoco

    out: Dict[str, Callable] = {}
    m, d = dyn_mj._m, dyn_mj._d
    buf = np.zeros(m.nv)

    def mj_gravity(q, qd, qdd):
        d.qpos[:] = q
        d.qvel[:] = 0.0
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_comVel(m, d)
        mujoco.mj_rne(m, d, 0, buf)
        return buf

    def mj_rnea(q, qd, qdd):
        d.qpos[:] = q
        d.qvel[:] = qd
        d.qacc[:] = qdd
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_comVel(m, d)
        mujoco.mj_rne(m, d, 1, buf)
        return buf

    out["mujoco raw: kinematics+comPos+comVel+mj_rne(0)"] = mj_gravity
    out["mujoco raw: kinematics+comPos+comVel+mj_rne(1)"] = mj_rnea
    if dyn_pin is not None:
        pin, pm, pd = dyn_pin._pin, dyn_pin._model, dyn_pin._data
        out["pinocchio raw: computeGeneralizedGravity"] = lambda q, qd, qdd: pin.computeGeneralizedGravity(pm, pd, q)
        out["pinocchio raw: rnea"] = lambda q, qd, qdd: pin.rnea(pm, pd, q, qd, qdd)
    return out


def measure(compiled, blocks: int = 200, block: int = 100, seed: int = 0,
            backends: Optional[Sequence[str]] = None) -> dict:
    from residual_control.robot.dynamics import make_dynamics, pinocchio_available

    n = compiled.dof
    if backends is None:
        backends = ["mujoco"] + (["pinocchio"] if pinocchio_available() else [])
    dyns = {b: make_dynamics(compiled, b, payload_mass=0.5, viscous_friction=compiled.damping) for b in backends}
    rng = np.random.default_rng(seed)
    lo, hi = compiled.position_limits
    lo, hi = np.maximum(lo, -3.0), np.minimum(hi, 3.0)
    states = [(rng.uniform(lo, hi), rng.uniform(-2.0, 2.0, n), rng.uniform(-10.0, 10.0, n)) for _ in range(block)]

    # Agreement of the backends on these states.
    agreement = {}
    if "mujoco" in dyns and "pinocchio" in dyns:
        a, b = dyns["mujoco"], dyns["pinocchio"]
        err = {"gravity_torque": 0.0, "inverse_dynamics": 0.0, "mass_matrix": 0.0}

        def worst(key, x, y):
            err[key] = max(err[key], float(np.max(np.abs(x - y))))

        for q, qd, qdd in states:
            worst("gravity_torque", a.gravity_torque(q), b.gravity_torque(q))
            worst("inverse_dynamics", a.inverse_dynamics(q, qd, qdd), b.inverse_dynamics(q, qd, qdd))
            worst("mass_matrix", a.mass_matrix(q), b.mass_matrix(q))
        agreement = {"max_abs_difference": err}

    mat = rng.normal(size=(n, n))
    cases: Dict[str, Callable] = {f"floor: numpy {n}x{n} matvec": lambda q, qd, qdd: mat @ q}
    for name, dyn in dyns.items():
        cases[f"{name}.gravity_torque"] = lambda q, qd, qdd, f=dyn.gravity_torque: f(q)
        cases[f"{name}.inverse_dynamics"] = dyn.inverse_dynamics
        cases[f"{name}.mass_matrix"] = lambda q, qd, qdd, f=dyn.mass_matrix: f(q)
    cases.update(_raw_cases(compiled, dyns.get("mujoco") or make_dynamics(compiled, "mujoco"), dyns.get("pinocchio")))

    per_call: Dict[str, List[float]] = {k: [] for k in cases}
    for fn in cases.values():  # warm up
        for q, qd, qdd in states[:10]:
            fn(q, qd, qdd)
    clock = time.perf_counter
    for _ in range(int(blocks)):
        for name, fn in cases.items():
            t0 = clock()
            for q, qd, qdd in states:
                fn(q, qd, qdd)
            per_call[name].append((clock() - t0) / len(states) * 1e6)
    floor_name = next(iter(cases))
    floor = float(np.median(per_call[floor_name]))
    rows = []
    for name, samples in per_call.items():
        med = float(np.median(samples))
        rows.append({"case": name, "median_us": med, "p90_us": float(np.percentile(samples, 90)),
                     "ratio_to_floor": med / floor if floor > 0 else float("nan")})
    return {
        "description": str(compiled.source),
        "joints": list(compiled.joint_names),
        "dof": n,
        "backends": list(dyns),
        "calls_per_case": int(blocks) * len(states),
        "block": len(states),
        "floor": floor_name,
        "rows": rows,
        **agreement,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def _table(result: dict) -> str:
    lines = [f"{result['description']}: {result['dof']} joints, backends {', '.join(result['backends'])}, "
             f"{result['calls_per_case']} calls per case in blocks of {result['block']}",
             f"{'case':<52} {'median us':>10} {'p90 us':>10} {'x floor':>8}"]
    for r in result["rows"]:
        lines.append(f"{r['case']:<52} {r['median_us']:>10.2f} {r['p90_us']:>10.2f} {r['ratio_to_floor']:>8.1f}")
    if "max_abs_difference" in result:
        diff = ", ".join(f"{k} {v:.1e}" for k, v in result["max_abs_difference"].items())
        lines.append(f"largest |mujoco - pinocchio| over the states: {diff}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="dynamics_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--description", type=Path, default=None,
                        help="URDF or MJCF to time (default: a random serial chain, see --dof and --seed)")
    parser.add_argument("--joints", default=None, help="comma-separated used joints (default: all actuable)")
    parser.add_argument("--payload-link", default=None)
    parser.add_argument("--package-path", action="append", default=[], type=Path,
                        help="folder containing the packages package:// URIs name (repeatable)")
    parser.add_argument("--dof", type=int, default=7, help="joints of the random chain (default 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--block", type=int, default=100, help="calls per block (one state each)")
    parser.add_argument("--backend", action="append", choices=("mujoco", "pinocchio"), default=None,
                        help="time only this backend (repeatable; default: every installed one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.blocks < 1 or args.block < 1:
        parser.error(f"--blocks and --block: expected >= 1, found {args.blocks}, {args.block}")

    from residual_control.robot.description import DescriptionError, compile_robot

    with tempfile.TemporaryDirectory(prefix="dynamics_bench_") as tmp:
        path = args.description or _chain_description(args.seed, args.dof, Path(tmp))
        joints = [j.strip() for j in args.joints.split(",") if j.strip()] if args.joints else None
        try:
            compiled = compile_robot(path, joints=joints, payload_link=args.payload_link,
                                     package_paths=args.package_path)
        except DescriptionError as exc:
            print(f"dynamics_bench: {exc}", file=sys.stderr)
            return 2
        try:
            result = measure(compiled, blocks=args.blocks, block=args.block, seed=args.seed, backends=args.backend)
        except ImportError as exc:
            print(f"dynamics_bench: {exc}", file=sys.stderr)
            return 2
        if args.description is None:
            result["description"] = f"random {args.dof}-joint chain (seed {args.seed})"
    print(_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
