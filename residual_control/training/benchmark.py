"""Learning benchmark: residual SAC vs from-scratch SAC (same env, algorithm, budget) + the BC table.

Outputs in ``out_dir``: ``rl_curves.csv`` / ``rl_benchmark.json`` / ``rl_curves.png``
(deterministic-policy tracking RMSE, return and command roughness on fixed evaluation episodes vs env
steps) and ``bc_table.json`` / ``bc_table.csv`` (closed-loop RMSE ratio vs number of DAgger episodes).

Runs: ``zero_init`` (zero-initialised residual SAC, the config as given), ``from_scratch`` (SAC on the
whole torque), and with ``init`` (an imitation residual, e.g. models/residual_bc.onnx) ``imitation_init``
(the same config with ``rl.init_from: init``) plus one run per ``variants`` config (each named by its
file stem; a variant without ``rl.init_from`` takes ``init``); ``baselines=False`` runs the variants only.
With ``init`` the imitation residual
itself is evaluated on the same episodes: its RMSE is the reference, and the reported ratio is

    env steps for a residual run to first reach target_factor x the imitation RMSE
    ------------------------------------------------------------------------------
        env steps for from-scratch SAC to first reach the same RMSE

null when either never reaches it within the budget (``reason`` says which). Without ``init`` the
target is target_factor x the base controller's RMSE (the zero-residual run's step 0).
The earlier ratio (steps for the zero-init residual to reach the scratch run's final tracking return
over the budget) stays as ``scratch_final_ratio``.

``params_file`` (``learn-bench --robot DIR``: the robot's) replaces the configs' ``params_file``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .common.config import load_train_config
from .common.logging import CSVLogger


def steps_ratio(residual_curve: list[dict], scratch_curve: list[dict], key: str = "tracking_return") -> dict:
    target = scratch_curve[-1][key]
    budget = scratch_curve[-1]["step"]
    reach = next((row["step"] for row in residual_curve if row[key] >= target), None)
    return {"scratch_final": target, "scratch_steps": budget, "residual_steps_to_reach": reach,
            "ratio": None if reach is None else reach / budget, "metric": key}


def steps_to_reach(curve: list[dict], target: float, key: str = "rmse") -> int | None:
    """First evaluated step whose ``key`` is at or below ``target`` (None: never within the curve)."""
    return next((int(row["step"]) for row in curve if row[key] <= target), None)


def rmse_steps_ratio(residual_curve: list[dict], scratch_curve: list[dict], target_rmse: float) -> dict:
    """Return the steps of a residual run vs from-scratch SAC to first reach ``target_rmse`` (None if one misses).

    ``ratio_below``: where only SAC from scratch misses, the residual run's steps / SAC's budget, which the
    ratio is below (None otherwise).
    """
    res = steps_to_reach(residual_curve, target_rmse)
    scr = steps_to_reach(scratch_curve, target_rmse)
    budget = {"residual_budget": int(residual_curve[-1]["step"]), "scratch_budget": int(scratch_curve[-1]["step"])}
    reason = None
    if res is None and scr is None:
        reason = "neither run reached the target within its budget"
    elif scr is None:
        reason = f"from-scratch SAC did not reach the target within {budget['scratch_budget']} steps"
    elif res is None:
        reason = f"the residual run did not reach the target within {budget['residual_budget']} steps"
    elif scr == 0:
        reason = "from-scratch SAC met the target at step 0"
    if res == 0 and scr is None:
        reason = None                  # met at step 0: the ratio is 0 whatever SAC from scratch would need
    ratio = None if reason else (0.0 if res == 0 else res / scr)
    # The residual run reached it after some steps and SAC from scratch did not within its budget: the ratio
    # is below residual steps / that budget (a bound, what the benchmark can say; the ratio stays null).
    bound = res / budget["scratch_budget"] if res and scr is None and budget["scratch_budget"] > 0 else None
    return {"target_rmse": float(target_rmse), "residual_steps": res, "scratch_steps": scr,
            "budget": budget, "ratio": ratio, "ratio_below": bound, "reason": reason}


def _overrides(params_file: str | None, init: str | None = None) -> dict | None:
    out = {}
    if params_file:
        out["params_file"] = params_file
    if init:
        out["rl"] = {"init_from": init}
    return out or None


def evaluate_init(cfg, init: str, seed: int | None = None) -> dict:
    """Evaluate the imitation residual on the episodes train_rl evaluates for ``cfg`` and ``seed``."""
    from .common.seeding import seed_everything
    from .env import make_env_from_config
    from .rl import EvalRecorder, FixedNormalize, NetPolicy, load_init_residual, normaliser_stats

    c = cfg.values
    seed = int(c.seed if seed is None else seed)
    seed_everything(seed, threads=c.torch_threads)
    from .finetune import env_config_for_model, load_init

    raw = make_env_from_config(env_config_for_model(c.env, load_init(init)[1]), c.params_file, seed=seed + 2)
    net = load_init_residual(init, raw)
    mean, std, clip = normaliser_stats(net)
    r = EvalRecorder(FixedNormalize(raw, mean, std, clip), c.rl.eval_episodes, seed)(NetPolicy(net))
    return {"model": init, **r}


def _run_summary(name: str, config: str, s: dict, imitation_rmse: float | None, target: float) -> dict:
    curve = s["curve"]
    # The imitation RMSE within float rounding (an init_from run's step 0 is that residual, evaluated again).
    reach = None if imitation_rmse is None else imitation_rmse * (1 + 1e-6)
    return {"name": name, "config": config, "method": s["method"], "init_from": s.get("init_from"),
            "final_rmse": curve[-1]["rmse"], "final_rms_step": curve[-1]["rms_step"],
            "best_rmse": min(r["rmse"] for r in curve),
            "steps_to_imitation_rmse": None if reach is None else steps_to_reach(curve, reach),
            "steps_to_0.8_imitation_rmse": None if reach is None else steps_to_reach(curve, 0.8 * imitation_rmse),
            "steps_to_target": steps_to_reach(curve, target), "train_seconds": s["train_seconds"],
            "curve": curve}


def _reusable(run_dir: Path, cfg, seed: int | None, full_action: bool, total: int) -> dict | None:
    """Return a finished run's summary.json if it is of this config, seed, budget, method and initial model."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    s = json.loads(path.read_text(encoding="utf-8"))
    want_seed = int(cfg.values.seed if seed is None else seed)
    init = cfg.values.rl.init_from if not full_action and cfg.values.rl.init_from else None
    same = (s.get("config_sha256") == cfg.sha256 and s.get("seed") == want_seed and s.get("total_steps") == total
            and s.get("method") == ("rl_scratch" if full_action else "rl_residual") and s.get("init_from") == init)
    return s if same else None


def rl_benchmark(config_path: str, out_dir: str, seed: int | None = None, total_steps: int | None = None,
                 progress: bool = True, params_file: str | None = None, init: str | None = None,
                 variants: Sequence[str] = (), target_factor: float = 1.5, baselines: bool = True,
                 resume: bool = False) -> dict:
    """Run (``baselines``) from-scratch SAC, the zero-init residual and the plain init run, then the variants.

    ``rl_benchmark.json`` is rewritten after every run, so an interrupted benchmark keeps what it measured;
    ``resume`` reuses a run's ``summary.json`` in ``out_dir`` when it is of the same config hash, seed,
    budget, method and initial model (training is deterministic for a seed: rerunning gives the same curve).
    """
    from .rl import train_rl

    cfg = load_train_config(config_path, _overrides(params_file), schema="rl")
    total = int(total_steps or cfg.values.benchmark.total_steps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    imitation = evaluate_init(cfg, init, seed) if init else None
    plan = []                      # (name, config path, loaded config, full_action); baselines first
    if baselines:
        plan += [("from_scratch", config_path, cfg, True), ("zero_init", config_path, cfg, False)]
    if init and baselines:
        plan.append(("imitation_init", config_path, load_train_config(config_path, _overrides(params_file, init),
                                                                     schema="rl"), False))
    for v in variants:
        vcfg = load_train_config(v, _overrides(params_file), schema="rl")
        if not vcfg.values.rl.init_from and init:
            vcfg = load_train_config(v, _overrides(params_file, init), schema="rl")
        plan.append((Path(v).stem.removeprefix("train_rl_"), v, vcfg, False))
    report = {"config": config_path, "config_sha256": cfg.sha256, "params_file": cfg.values.params_file,
              "seed": int(cfg.values.seed if seed is None else seed), "budget_steps": total,
              "target_factor": target_factor, "imitation": imitation, "runs": {}}
    summaries = {}
    for name, path, rcfg, full in plan:
        s = _reusable(out / name, rcfg, seed, full, total) if resume else None
        if s is None:
            s = train_rl(rcfg, str(out / name), seed, full_action=full, total_steps=total, progress=progress)
        summaries[name] = s
        residual_runs = [x for n, x in summaries.items() if n != "from_scratch"]
        if imitation is None and not residual_runs:
            continue                   # no reference yet (from-scratch SAC alone)
        ref = imitation["rmse"] if imitation is not None else (
            summaries.get("zero_init") or residual_runs[0])["curve"][0]["rmse"]
        report["reference_rmse"] = ref
        report["target_rmse"] = target_factor * ref
        report["runs"] = {n: _run_summary(n, p, summaries[n], imitation and imitation["rmse"], target_factor * ref)
                          for n, p, _c, _f in plan if n in summaries}
        report["train_seconds"] = {n: x["train_seconds"] for n, x in summaries.items()}
        if "from_scratch" in summaries:
            scratch = summaries["from_scratch"]["curve"]
            report["ratio"] = {n: rmse_steps_ratio(x["curve"], scratch, report["target_rmse"])
                               for n, x in summaries.items() if n != "from_scratch"}
            if "zero_init" in summaries:
                report["scratch_final_ratio"] = steps_ratio(summaries["zero_init"]["curve"], scratch)
        with open(out / "rl_benchmark.json", "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
        with CSVLogger(out / "rl_curves.csv") as log:
            for n, x in summaries.items():
                for row in x["curve"]:
                    log.log({"run": n, **{k: v for k, v in row.items() if k != "rms_step"}})
        plot_curves(report, out / "rl_curves.png")
    return report


def plot_curves(report: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, run in report["runs"].items():
        c = run["curve"]
        steps = [r["step"] for r in c]
        axes[0].plot(steps, [r["rmse"] for r in c], marker="o", ms=3, label=name)
        axes[1].plot(steps, [r["rms_step_max"] for r in c], marker="o", ms=3, label=name)
    imitation = report.get("imitation")
    if imitation:
        axes[0].axhline(imitation["rmse"], color="k", ls="--", lw=1, label="imitation residual")
        axes[0].axhline(0.8 * imitation["rmse"], color="g", ls=":", lw=1, label="0.8 x imitation")
        axes[1].axhline(imitation["rms_step_max"], color="k", ls="--", lw=1, label="imitation residual")
    base = report["runs"].get("zero_init")
    if base:
        axes[0].axhline(base["curve"][0]["rmse"], color="grey", ls="-.", lw=1, label="base alone")
        axes[1].axhline(base["curve"][0]["rms_step_max"], color="grey", ls="-.", lw=1, label="base alone")
    if "target_rmse" in report:
        axes[0].axhline(report["target_rmse"], color="r", ls=":", lw=1,
                        label=f"target ({report['target_factor']} x reference)")
    axes[0].set_ylabel("tracking RMSE [rad] (eval, deterministic)")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("command roughness: max-joint RMS step [N m]")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("env steps")
        ax.legend(fontsize=7)
    ratios = report.get("ratio", {})
    reached = ", ".join(f"{n}: {r['ratio']:.3g}" if r["ratio"] is not None else f"{n}: < {r['ratio_below']:.3g}"
                        for n, r in ratios.items() if r["ratio"] is not None or r.get("ratio_below") is not None)
    scratch = next(iter(ratios.values()), {}).get("scratch_steps", "n/a") if ratios else "n/a"
    title = (f"steps to {report.get('target_rmse', float('nan')):.4f} rad, residual run / from-scratch SAC "
             f"(from scratch: {'never' if scratch is None else scratch}): {reached or 'null for every run'}")
    fig.suptitle(title, fontsize=9)
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
