"""Learning benchmark: residual SAC vs from-scratch SAC (same env, algorithm, budget) + the BC table.

Outputs in ``out_dir``: ``rl_curves.csv`` / ``rl_benchmark.json`` / ``rl_curves.png``
(deterministic-policy tracking return on fixed evaluation episodes vs env steps)
and ``bc_table.json`` / ``bc_table.csv`` (closed-loop RMSE ratio vs number of
DAgger episodes). The reported ratio is

    steps for residual RL to first reach the from-scratch run's final tracking return
    ---------------------------------------------------------------------------------
                              from-scratch steps (the budget)

(0 when the zero-initialised residual policy -- the base controller alone --
already beats it; > 1 / null when it never does within the budget).

``params_file`` (``learn-bench --robot DIR``: the robot's) replaces the configs' ``params_file``.
"""
from __future__ import annotations

import json
from pathlib import Path

from .common.config import load_train_config
from .common.logging import CSVLogger


def steps_ratio(residual_curve: list[dict], scratch_curve: list[dict], key: str = "tracking_return") -> dict:
    target = scratch_curve[-1][key]
    budget = scratch_curve[-1]["step"]
    reach = next((row["step"] for row in residual_curve if row[key] >= target), None)
    return {"scratch_final": target, "scratch_steps": budget, "residual_steps_to_reach": reach,
            "ratio": None if reach is None else reach / budget, "metric": key}


def _overrides(params_file: str | None) -> dict | None:
    return {"params_file": params_file} if params_file else None


def rl_benchmark(config_path: str, out_dir: str, seed: int | None = None, total_steps: int | None = None,
                 progress: bool = True, params_file: str | None = None) -> dict:
    from .rl import train_rl

    cfg = load_train_config(config_path, _overrides(params_file), schema="rl")
    total = int(total_steps or cfg.values.benchmark.total_steps)
    out = Path(out_dir)
    res = train_rl(cfg, str(out / "residual"), seed, full_action=False, total_steps=total, progress=progress)
    scr = train_rl(cfg, str(out / "scratch"), seed, full_action=True, total_steps=total, progress=progress)
    with CSVLogger(out / "rl_curves.csv") as log:
        for name, s in (("residual", res), ("scratch", scr)):
            for row in s["curve"]:
                log.log({"run": name, **row})
    report = {"config": config_path, "config_sha256": cfg.sha256, "params_file": cfg.values.params_file,
              "seed": res["seed"], "budget_steps": total,
              "residual": res["curve"], "scratch": scr["curve"],
              "ratio": steps_ratio(res["curve"], scr["curve"]),
              "train_seconds": {"residual": res["train_seconds"], "scratch": scr["train_seconds"]}}
    with open(out / "rl_benchmark.json", "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    plot_curves(report, out / "rl_curves.png")
    return report


def plot_curves(report: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, c in (("residual SAC", report["residual"]), ("from-scratch SAC", report["scratch"])):
        steps = [r["step"] for r in c]
        axes[0].plot(steps, [r["tracking_return"] for r in c], marker="o", label=name)
        axes[1].plot(steps, [r["rmse"] for r in c], marker="o", label=name)
    axes[0].set_ylabel("tracking return (eval, deterministic)")
    axes[1].set_ylabel("tracking RMSE [rad]")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("env steps")
        ax.legend()
    r = report["ratio"]
    fig.suptitle(f"steps ratio (residual to reach scratch final / scratch budget): {r['ratio']}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def bc_table(config_path: str, out_dir: str, seed: int | None = None, episodes=None,
             progress: bool = True, params_file: str | None = None) -> dict:
    from .bc import train_bc

    cfg = load_train_config(config_path, _overrides(params_file), schema="bc")
    episodes = episodes or cfg.values.bc.table_episodes
    out = Path(out_dir)
    rows = []
    with CSVLogger(out / "bc_table.csv") as log:
        for n in episodes:
            s = train_bc(cfg, str(out / f"bc_{n}"), seed, episodes=int(n), progress=progress)
            row = {"episodes": int(n), "samples": s["samples"], "final_loss": s["final_loss"],
                   "train_seconds": s["train_seconds"]}
            for plant, r in s["evaluation"].items():
                row[f"{plant}_ratio"] = r["ratio"]
                row[f"{plant}_rmse"] = r["residual_rmse"]
                row[f"{plant}_base_rmse"] = r["base_rmse"]
            rows.append(row)
            log.log(row)
    report = {"config": config_path, "config_sha256": cfg.sha256, "params_file": cfg.values.params_file,
              "rows": rows}
    with open(out / "bc_table.json", "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    return report
