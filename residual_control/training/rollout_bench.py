"""``rollout-bench``: the speed-up of parallel rollouts (``--workers``, ``--ray-address``) on this machine.

Two rollout jobs of training, each timed where :class:`~.common.parallel.Rollouts` runs them:

* ``dagger``: one DAgger round of ``episodes`` episodes in which the student acts (the costly branch:
  the expert labels every state and the network runs every period), as ``train bc`` collects them;
* ``evaluate``: the closed-loop evaluation of the same student on the robot's evaluation plants
  (base alone and base + residual on each), as ``train bc`` ends and ``evaluate`` runs.

The floor is the same job in this process (``inline``, per-episode generators: the same work and the
same data as the parallel runs, which the bench checks). Each setting is timed ``cold`` once (for a
parallel setting that includes starting the workers: spawning processes that import torch and MuJoCo,
or starting a local Ray instance), then ``warm`` ``repeat`` times reusing them, as the later DAgger rounds
of a run do; the warm time is the median. Ratios are floor / setting
(> 1: faster), all measured in the same run; the machine's CPU count and load average are recorded.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - no load average on this platform
        return []


def rollout_bench(params_file: str | None = None, episodes: int = 16, workers: int = 2, ray: bool = True,
                  seconds: float = 10.0, seed: int = 0, json_path: str | None = None, progress: bool = True,
                  repeat: int = 3) -> dict:
    """Time the dagger and evaluate jobs inline, on ``workers`` processes and (``ray``) on local Ray."""
    import numpy as np
    import torch

    from .bc import collect_parallel
    from .common.config import load_train_config
    from .common.nets import ResidualPolicyNet
    from .common.parallel import Rollouts, net_state
    from .common.seeding import seed_everything
    from .env import make_env_from_config
    from .evaluate import compare_plants, load_reference_spec, robot_evaluation

    overrides = {"params_file": params_file} if params_file else None
    cfg = load_train_config("config/train_bc.yaml", overrides, schema="bc")
    c = cfg.values
    seed_everything(seed, threads=c.torch_threads)
    env = make_env_from_config(c.env, c.params_file, seed=seed)
    net = ResidualPolicyNet(env.assembler.size, env.residual_limit, c.network.hidden, c.network.activation)
    net.normalizer.fit(np.asarray([env.reset(seed=s)[0] for s in range(20)]))
    plants, reference = robot_evaluation(c.params_file)
    traj = load_reference_spec(reference or c.evaluation.reference)
    student = {"student": net_state(net)}

    def dagger(rollouts):
        obs, _labels = collect_parallel(rollouts, c.env, c.params_file, net, c.bc.expert, episodes, seed, 1,
                                        beta=0.0, noise_std=c.bc.noise_std)
        return obs

    def evaluate(rollouts):
        res = compare_plants(student, plants, traj, seconds, c.params_file, c.env.residual_delay_steps,
                             rollouts=rollouts)
        return np.asarray([[r["base"]["rmse"], r["residual"]["rmse"]] for r in res.values()])

    jobs = {"dagger": dagger, "evaluate": evaluate}
    settings = [("inline", lambda: Rollouts(1))]
    if workers > 1:
        settings.append((f"process x{workers}", lambda: Rollouts(workers)))
    if ray:
        settings.append((f"ray local x{workers}", lambda: Rollouts(workers, ray_address="local")))
    load_before = _load()
    rows = []
    reference_out = {}
    for label, make in settings:
        with make() as rollouts:
            for job, fn in jobs.items():
                times = []
                for attempt in ["cold"] + ["warm"] * max(1, int(repeat)):
                    t0 = time.perf_counter()
                    out = fn(rollouts)
                    times.append(time.perf_counter() - t0)
                    if job not in reference_out:
                        reference_out[job] = out
                    same = bool(np.array_equal(out, reference_out[job]))
                    if not same:
                        raise AssertionError(f"rollout-bench: {label} {job} ({attempt}) gave other results than "
                                             f"inline: expected the same data for the same seed")
                warm = float(np.median(times[1:]))
                rows.append({"setting": label, "job": job, "cold_s": round(times[0], 3), "warm_s": round(warm, 3),
                             "warm_runs_s": [round(t, 3) for t in times[1:]], "same_as_inline": True})
                if progress:
                    print(f"{label:>16} {job:>9}: cold {times[0]:7.2f} s, warm (median of {len(times) - 1}) "
                          f"{warm:7.2f} s", flush=True)
    floors = {r["job"]: r for r in rows if r["setting"] == "inline"}
    for r in rows:
        f = floors[r["job"]]
        r["speedup_cold"] = round(f["warm_s"] / r["cold_s"], 3)
        r["speedup_warm"] = round(f["warm_s"] / r["warm_s"], 3)
    report = {"params_file": c.params_file, "episodes": episodes, "episode_seconds": c.env.episode_seconds,
              "evaluation_plants": list(plants), "evaluation_seconds": seconds, "workers": workers, "repeat": repeat,
              "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "load_average_before": load_before, "load_average_after": _load(), "rows": rows,
              "floor": "inline (this process, warm): the same jobs and data without workers"}
    if progress:
        print(format_table(report), flush=True)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return report


def format_table(report: dict) -> str:
    """Return the report as a Markdown table (the README's)."""
    lines = ["| setting | job | cold [s] | warm [s] | speed-up cold | speed-up warm |", "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['setting']} | {r['job']} | {r['cold_s']:.2f} | {r['warm_s']:.2f} | "
                     f"{r['speedup_cold']:.2f}x | {r['speedup_warm']:.2f}x |")
    return "\n".join(lines)
