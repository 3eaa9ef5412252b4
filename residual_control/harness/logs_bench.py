"""`residual-control logs-bench`: how few logged episodes it takes to close a gap the simulator left open.

The sim-to-real loop of docs/logs.md, measured end to end on a "real robot"
plant (a plant file outside the training ranges with effects the simulator
leaves out, ``config/plants/real_gap.yaml`` for the built-in arm):

1. record: N episodes through the node graph with the sim-trained residual
   (``residual-control demo --trials residual --record``, one rosbag2 bag per
   episode, seed = episode index); bags already in ``OUT/bags`` are reused;
2. fine-tune: for each count in ``--episodes`` (default 1, 3, 10, 30),
   ``train finetune`` on the first that many bags, then ``export``;
3. measure: each fine-tuned model in the demo on the same plant (node
   graph), against the base alone and the sim-only residual (the recorded
   episodes' own RMSE).

Prints a table (episodes, minutes of logs, RMSE, ratios to the base and to
the sim-only residual, violations), writes ``OUT/logs_bench.json`` and a
plot (``--plot``). Each demo is a fresh graph of separate processes over DDS
on simulated time (lockstep), so a loaded machine makes it slower, not different.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..paths import share_path
from .robot_args import add_robot_argument, robot_of

DEFAULT_EPISODES = "1,3,10,30"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_robot_argument(p)
    p.add_argument("--plant", default="",
                   help="the 'real robot' plant YAML (default: the robot's plants/real_gap.yaml; the built-in arm: "
                        "config/plants/real_gap.yaml)")
    p.add_argument("--model", default="", help="the sim-trained ONNX residual (default: the robot's)")
    p.add_argument("--episodes", default=DEFAULT_EPISODES,
                   help=f"comma-separated episode counts to fine-tune on (default {DEFAULT_EPISODES})")
    p.add_argument("--duration", type=float, default=10.0, help="logged sim seconds per episode (default 10)")
    p.add_argument("--config", default="", help="fine-tuning config (default config/train_finetune.yaml)")
    p.add_argument("--out", default="runs/logs_bench", help="working folder: bags, runs, models, demo JSON")
    p.add_argument("--seed", type=int, default=0, help="fine-tuning seed")
    p.add_argument("--json", default="", help="also write the results to this file")
    p.add_argument("--plot", default="", help="write the RMSE-vs-episodes plot to this PNG")


def _say(msg: str) -> None:
    print(f"[logs-bench] {msg}", file=sys.stderr, flush=True)


def default_plant(robot) -> str:
    """Return the robot's 'real robot' plant: plants/real_gap.yaml in its folder (the built-in arm's: config/)."""
    own = Path(robot.root) / "plants" / "real_gap.yaml"
    if own.is_file():
        return str(own)
    return str(share_path("config", "plants", "real_gap.yaml"))


def _demo(args: list[str], json_path: Path) -> dict:
    """Run `residual-control demo` in its own process (a fresh rclpy); return its JSON."""
    cmd = [sys.executable, "-m", "residual_control.cli", "demo", *args, "--plot", "", "--json", str(json_path)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not json_path.is_file():
        raise RuntimeError(f"demo failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}")
    return json.loads(json_path.read_text())


def _without_envelope(robot, path: Path) -> str:
    """Write a copy of the robot's params file with the policy's envelope check off; return its path."""
    import yaml

    from .. import params_file as pf

    params = pf.load(str(robot.params))
    params.setdefault("residual_policy", {}).setdefault("ros__parameters", {})["envelope_check"] = False
    path.write_text(yaml.safe_dump(params))
    return str(path)


def parse_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as exc:
        raise ValueError(f"--episodes: expected comma-separated positive integers, found {text!r}") from exc
    if not counts or counts[0] < 1:
        raise ValueError(f"--episodes: expected comma-separated positive integers, found {text!r}")
    return counts


def run(args) -> int:
    from ..logs.bag import read_episode
    from ..training.export import export_checkpoint
    from ..training.finetune import finetune

    try:
        robot = robot_of(args)
        counts = parse_counts(args.episodes)
    except ValueError as exc:
        print(f"logs-bench: {exc}", file=sys.stderr)
        return 2
    plant = args.plant or default_plant(robot)
    model = args.model or str(robot.model)
    for what, path in (("plant", plant), ("model", model)):
        if not os.path.isfile(path):
            print(f"logs-bench: {what}: expected a file, found nothing at {path}", file=sys.stderr)
            return 2
    out = Path(args.out)
    (out / "bags").mkdir(parents=True, exist_ok=True)
    (out / "eval").mkdir(parents=True, exist_ok=True)
    common = ["--robot", str(robot.root), "--plant", plant, "--duration", f"{args.duration:g}"]
    started = time.monotonic()

    # 1. Record the episodes (reused when a previous run left them).
    sim_only = []
    for i in range(counts[-1]):
        folder = out / "bags" / f"ep_{i:02d}"
        result = out / "bags" / f"ep_{i:02d}.json"
        if not (folder / "residual" / "metadata.yaml").is_file():
            if folder.exists():
                import shutil

                shutil.rmtree(folder)
            _say(f"recording episode {i + 1}/{counts[-1]} through the node graph")
            _demo([*common, "--model", model, "--trials", "residual", "--seed", str(i), "--record", str(folder)],
                  result)
        doc = json.loads(result.read_text())
        sim_only.append({"rmse": doc["runs"]["residual"]["rmse"], "violations": doc["runs"]["residual"]["violations"]})
    bags = [str(out / "bags" / f"ep_{i:02d}" / "residual") for i in range(counts[-1])]
    seconds = [read_episode(b).seconds for b in bags]

    # 2. The base alone on the same plant.
    _say("the base controller alone")
    base_doc = _demo([*common, "--model", model, "--trials", "base"], out / "eval" / "base.json")
    base_rmse = base_doc["runs"]["base"]["rmse"]
    sim_rmse = sum(s["rmse"] for s in sim_only) / len(sim_only)

    # What the sim-only weights would do if they were trusted outside their training envelope (the check
    # off): how much of the gain below is coverage of the robot's states, how much the identified plant.
    _say("the sim-only residual with its envelope check off")
    unchecked = _demo([*common, "--model", model, "--trials", "residual",
                       "--params-file", _without_envelope(robot, out / "eval" / "params_no_envelope.yaml")],
                      out / "eval" / "sim_only_no_envelope.json")["runs"]["residual"]

    # 3. Fine-tune on the first n episodes, export, and run the demo with the result.
    rows = []
    for n in counts:
        run_dir = out / "runs" / f"episodes_{n:02d}"
        onnx = out / "models" / f"finetuned_{n:02d}.onnx"
        onnx.parent.mkdir(parents=True, exist_ok=True)
        _say(f"fine-tuning on {n} episode(s)")
        t0 = time.monotonic()
        summary = finetune(bags[:n], model, str(run_dir), config=args.config or None, robot=str(robot.root),
                           seed=args.seed, progress=False)
        export_checkpoint(summary["checkpoint"], str(onnx))
        train_s = time.monotonic() - t0
        _say(f"demo with the model fine-tuned on {n} episode(s)")
        doc = _demo([*common, "--model", str(onnx), "--trials", "residual"], out / "eval" / f"finetuned_{n:02d}.json")
        r = doc["runs"]["residual"]
        rows.append({"episodes": n, "log_minutes": sum(seconds[:n]) / 60.0, "finetune_s": train_s,
                     "rmse": r["rmse"], "ratio_to_base": r["rmse"] / base_rmse,
                     "ratio_to_sim_only": r["rmse"] / sim_rmse, "violations": r["violations"],
                     "identified_plant": summary["identification"].get("params"), "model": str(onnx)})

    elapsed = time.monotonic() - started
    doc = {"robot": robot.name, "plant": plant, "init_model": model, "duration_s": args.duration,
           "base_rmse": base_rmse, "sim_only_rmse": sim_rmse, "sim_only_episodes": sim_only,
           "sim_only_ratio_to_base": sim_rmse / base_rmse,
           "sim_only_no_envelope": {"rmse": unchecked["rmse"], "ratio_to_base": unchecked["rmse"] / base_rmse,
                                    "violations": unchecked["violations"]},
           "rows": rows, "elapsed_s": elapsed}
    print()
    print(format_table(doc))
    violations = sum(r["violations"] for r in rows) + sum(s["violations"] for s in sim_only) \
        + base_doc["runs"]["base"]["violations"] + unchecked["violations"]
    print(f"violations in all demos: {violations}; logs-bench took {elapsed / 60:.1f} min")
    for path in {str(out / "logs_bench.json"), args.json} - {""}:
        Path(path).write_text(json.dumps(doc, indent=2))
        print(f"results written to {path}")
    if args.plot:
        plot(args.plot, doc)
        print(f"plot written to {args.plot}")
    return 0 if violations == 0 else 1


def format_table(doc: dict) -> str:
    head = ["logged episodes", "minutes of logs", "fine-tune [s]", "RMSE [rad]", "÷ base", "÷ sim-only",
            "violations"]
    rows = [["0 (sim-only)", "-", "-", f"{doc['sim_only_rmse']:.4f}", f"{doc['sim_only_ratio_to_base']:.3f}",
             "1.000", str(sum(s["violations"] for s in doc["sim_only_episodes"]))]]
    if "sim_only_no_envelope" in doc:
        u = doc["sim_only_no_envelope"]
        rows.append(["0 (sim-only, envelope check off)", "-", "-", f"{u['rmse']:.4f}", f"{u['ratio_to_base']:.3f}",
                     f"{u['rmse'] / doc['sim_only_rmse']:.3f}", str(u["violations"])])
    for r in doc["rows"]:
        rows.append([str(r["episodes"]), f"{r['log_minutes']:.1f}", f"{r['finetune_s']:.0f}", f"{r['rmse']:.4f}",
                     f"{r['ratio_to_base']:.3f}", f"{r['ratio_to_sim_only']:.3f}", str(r["violations"])])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([f"base alone RMSE {doc['base_rmse']:.4f} rad on {Path(doc['plant']).name}",
                      line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def plot(path: str, doc: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["episodes"] for r in doc["rows"]]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(n, [r["rmse"] for r in doc["rows"]], "o-", color="tab:green", label="fine-tuned on the logs")
    ax.axhline(doc["sim_only_rmse"], color="tab:orange", ls="--", label="sim-only residual")
    if "sim_only_no_envelope" in doc:
        ax.axhline(doc["sim_only_no_envelope"]["rmse"], color="tab:purple", lw=0.9, ls="--",
                   label="sim-only residual, envelope check off")
    ax.axhline(doc["base_rmse"], color="tab:red", ls=":", label="base alone")
    ax.axhline(0.5 * doc["sim_only_rmse"], color="grey", lw=0.8, ls="-.", label="0.5 × sim-only")
    ax.set_xscale("log")
    ax.set_xticks(n, [f"{k}\n{r['log_minutes']:.1f} min" for k, r in zip(n, doc["rows"])])
    ax.set_xlabel("logged episodes (minutes of logs)")
    ax.set_ylabel("tracking RMSE [rad]")
    ax.set_ylim(bottom=0.0)
    ax.set_title(f"{doc['robot']} on {Path(doc['plant']).name}: demo through the node graph")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


__all__ = ["add_arguments", "run", "parse_counts", "default_plant", "format_table"]
