"""Running the matrix.

Each family's graph, the trials, the JSON document, the table and the `residual-control faults`
command line.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from .common import SCENARIOS, WALL_SLACK, Context, NotApplicable, Scenario, Trial, _Timeout
from .probe_driven import Bench
from .spawn import BAD_MODELS, _start_refusals


# ====================================================================== running
def _run_bench_group(ctx: Context, harness: str, scenarios: list[Scenario], trial: int) -> dict:
    label = f"{harness}_trial{trial}"
    out = {}
    pending = None
    if harness == "policy" and any(s.name in BAD_MODELS for s in scenarios):
        pending = _start_refusals(ctx, label)
    b = None
    try:
        b = Bench(ctx, label, with_policy=harness == "policy", use_sim_time=harness == "clock")
        b.pending = pending
        try:
            b.wait_nominal(120.0)
        except Exception as exc:
            for s in scenarios:
                t = Trial()
                t.fail(f"graph did not come up: {exc}")
                out[s.name] = t
            return out
        for s in scenarios:
            skipped: list = []
            for attempt in range(LOOP_ATTEMPTS):  # again while the precondition fails
                t = Trial()
                ctx.say(f"  {s.name} (trial {trial}{f', attempt {attempt + 1}' if attempt else ''})")
                m = b.mark()
                try:
                    s.func(b, t)
                except NotApplicable as exc:
                    t.not_applicable = str(exc)
                except _Timeout as exc:
                    t.fail(str(exc))
                except Exception as exc:  # a harness failure is a failed scenario, never a crash of the matrix
                    t.fail(f"{type(exc).__name__}: {exc}")
                    t.notes["traceback"] = traceback.format_exc()[-1500:]
                b.judge(t, m)  # every command since the scenario began, whatever happened
                if not t.not_measured or t.problems or t.violations:
                    break
                skipped.append(t.not_measured)
            if skipped:
                t.notes["attempts_not_measured"] = skipped
            try:
                b.check_alive()
            except RuntimeError as exc:
                t.fail(f"a node died: {str(exc)[:500]}")
                out[s.name] = t
                break
            out[s.name] = t
    finally:
        if b is not None:
            b.close()
        if pending is not None:
            pending["graph"].stop()
    for s in scenarios:
        if s.name not in out:
            t = Trial()
            t.fail("not run: an earlier scenario of the same graph failed")
            out[s.name] = t
    return out


LOOP_ATTEMPTS = 3  # a loop trial whose precondition failed is run again, at most this many times in all


def _run_loop(ctx: Context, s: Scenario, trial: int) -> Trial:
    """One trial; run again while its precondition fails (the violations of every attempt count)."""
    skipped: list = []
    violations = 0
    for attempt in range(LOOP_ATTEMPTS):
        ctx.say(f"  {s.name} (trial {trial}{f', attempt {attempt + 1}' if attempt else ''})")
        try:
            t = s.func(ctx, trial + 1000 * attempt)
        except NotApplicable as exc:
            t = Trial(not_applicable=str(exc))
        except Exception as exc:
            t = Trial()
            t.fail(f"{type(exc).__name__}: {exc}")
            t.notes["traceback"] = traceback.format_exc()[-1500:]
        violations += t.violations
        if not t.not_measured or t.problems:
            break
        skipped.append(t.not_measured)
    t.violations = violations
    if skipped:
        t.notes["attempts_not_measured"] = skipped
    return t


def select(only: str, quick: bool) -> list[Scenario]:
    chosen = [s for s in SCENARIOS if s.quick] if quick else list(SCENARIOS)
    if only:
        wanted = [x.strip() for x in only.split(",") if x.strip()]
        unknown = [w for w in wanted if w not in {s.name for s in SCENARIOS}]
        if unknown:
            raise ValueError(f"--only: expected names from {[s.name for s in SCENARIOS]}, found {unknown}")
        chosen = [s for s in SCENARIOS if s.name in wanted]
    return chosen


def run_matrix(chosen: list[Scenario], trials: int, log_dir: str | None = None,
               progress: Callable[[str], None] | None = None, robot=None) -> dict:
    """Run ``trials`` of each scenario on ``robot`` (a robot folder, name or RobotSpec; default the built-in arm).

    A scenario that does not apply to the robot (every trial ``not_applicable``) has ``passed`` None.
    """
    import rclpy

    say = progress or (lambda m: print(f"[faults] {m}", flush=True))
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="residual_faults_"))
    own = not rclpy.ok()
    if own:
        rclpy.init()
    per: dict[str, list[Trial]] = {s.name: [] for s in chosen}
    try:
        ctx = Context(work, Path(log_dir) if log_dir else None, say, robot)
        say(f"robot {ctx.robot.name} ({ctx.robot_ref}): joints {ctx.joints}, params {ctx.params_file}")
        for trial in range(trials):
            say(f"trial {trial + 1}/{trials}")
            for harness in ("relay", "clock", "policy"):
                group = [s for s in chosen if s.harness == harness]
                if group:
                    say(f" {harness} graph: {len(group)} scenarios")
                    for name, t in _run_bench_group(ctx, harness, group, trial).items():
                        per[name].append(t)
            for s in chosen:
                if s.harness in ("loop", "external"):  # each trial starts its own graph
                    per[s.name].append(_run_loop(ctx, s, trial))
    finally:
        if own:
            rclpy.try_shutdown()
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for s in chosen:
        ts = per[s.name]
        lats = [t.fallback_latency_s for t in ts if t.fallback_latency_s is not None]
        recs = [t.recovered if t.recovered is not None else t.ok for t in ts]
        na = [t.not_applicable for t in ts if t.not_applicable]
        rows.append({
            "name": s.name, "harness": s.harness, "description": s.doc, "trials": len(ts),
            "violations": int(sum(t.violations for t in ts)),
            "commands_checked": int(sum(t.commands for t in ts)),
            "fallback_latency_s": max(lats) if lats else None,
            "fallback_bound_s": max((t.bound_s for t in ts if t.bound_s is not None), default=None),
            "recovered": bool(recs) and all(recs),
            "passed": None if ts and len(na) == len(ts) else (bool(ts) and all(t.ok and not t.not_applicable
                                                                                  for t in ts)),
            "not_applicable": na[0] if na and len(na) == len(ts) else "",
            "not_measured": [t.not_measured for t in ts if t.not_measured],
            "transition_steps": _largest_steps([t.notes.get("transition_steps") for t in ts]),
            "detail": [{"problems": t.problems, "not_measured": t.not_measured, "violations": t.violations,
                        "commands": t.commands, "not_applicable": t.not_applicable,
                        "fallback_latency_s": t.fallback_latency_s, "bound_s": t.bound_s,
                        "recovered": t.recovered, **t.notes} for t in ts],
        })
    return {"scenarios": rows, "trials": trials, "elapsed_s": round(time.monotonic() - started, 1),
            "robot": {"name": ctx.robot.name, "folder": ctx.robot_ref, "joints": ctx.joints,
                      "params_file": ctx.params_file, "plant_file": ctx.plant_file, "model": ctx.model},
            "bounds": "fallback bound = residual_timeout + one control period + one more period for the "
                      "quantisation of the clock (MuJoCo scenarios: simulated clock, exact); probe-driven "
                      f"scenarios run on the wall clock and add {WALL_SLACK} s of scheduling slack"}


def _largest_steps(per_trial: list) -> dict | None:
    """Per joint, the largest transition step (command, applied residual) over a scenario's trials."""
    got = [x for x in per_trial if x]
    if not got:
        return None
    out: dict = {"transitions": sum(x["transitions"] for x in got),
                 "fallback_transitions": sum(x["fallback"]["transitions"] for x in got)}
    for key in ("command", "applied_residual"):
        out[f"fallback_{key}"] = {j: max(x["fallback"][key][j] for x in got) for j in got[0]["fallback"][key]}
    out["fallback_bound"] = got[0]["fallback"].get("bound")
    return out


def format_table(rows) -> str:
    head = ["scenario", "harness", "trials", "commands", "violations", "fallback [s]", "bound [s]", "recovered",
            "passed"]
    body = []
    for r in rows:
        lat, bound = r["fallback_latency_s"], r["fallback_bound_s"]
        body.append([r["name"], r["harness"], str(r["trials"]), str(r["commands_checked"]), str(r["violations"]),
                     "-" if lat is None else f"{lat:.3f}", "-" if bound is None else f"{bound:.3f}",
                     "-" if r["passed"] is None else ("yes" if r["recovered"] else "NO"),
                     "not applicable" if r["passed"] is None
                     else "yes" if r["passed"] else ("not measured" if r.get("not_measured") else "NO")])
    widths = [max(len(h), *(len(x[i]) for x in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(x) for x in body])


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..robot_args import add_robot_argument

    add_robot_argument(p)
    p.add_argument("--json", default="", help="write the results as JSON to this file")
    p.add_argument("--trials", type=int, default=None, help="trials per scenario (default 2; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="one trial of a subset (about 3 minutes)")
    p.add_argument("--only", default="", help="comma-separated scenario names")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--log-dir", default="", help="keep the nodes' logs in this folder")


def run(args) -> int:
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:28} {s.harness:7} {'quick' if s.quick else '     '} {s.doc}")
        return 0
    try:
        chosen = select(args.only, args.quick)
    except ValueError as exc:
        print(f"faults: {exc}", file=sys.stderr)
        return 2
    trials = args.trials if args.trials is not None else (1 if args.quick else 2)
    if trials < 1:
        print(f"faults: --trials: expected >= 1, found {trials}", file=sys.stderr)
        return 2
    try:
        from ..robot_args import robot_of

        robot = robot_of(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"faults: --robot: {exc}", file=sys.stderr)
        return 2
    doc = run_matrix(chosen, trials, args.log_dir or None, robot=robot)
    print()
    print(format_table(doc["scenarios"]))
    print()
    print(doc["bounds"])
    failed = [r for r in doc["scenarios"] if r["passed"] is False]
    for r in doc["scenarios"]:
        if r["passed"] is None:
            print(f"NOT APPLICABLE {r['name']}: {r['not_applicable']}")
    for r in failed:
        for i, d in enumerate(r["detail"]):
            if d["problems"]:
                print(f"FAILED {r['name']} trial {i}: {'; '.join(d['problems'])[:600]}")
            elif d.get("not_measured"):
                print(f"NOT MEASURED {r['name']} trial {i}: {d['not_measured']}")
    total = sum(r["violations"] for r in doc["scenarios"])
    na = sum(1 for r in doc["scenarios"] if r["passed"] is None)
    print(f"robot {doc['robot']['name']}: {len(doc['scenarios'])} scenarios, {len(failed)} failed"
          f"{f', {na} not applicable' if na else ''}, {total} violations, {doc['elapsed_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2, default=_json_default))
        print(f"results written to {args.json}")
    return 0 if not failed and total == 0 else 1


def _json_default(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
