"""Closed-loop evaluation on the plant directly (no ROS): base alone vs base + residual.

Both runs use :class:`ResidualEnv` on a fixed plant (a plant YAML such as
config/plants/real.yaml) and a fixed reference (config/reference.yaml by
default), with the residual delayed by one control period and clamped by the
core Mixer at residual_limit, exactly as in the ROS graph. "Base alone" is
the same loop with no residual. Reports RMSE per joint and overall (rad, on
the true joint position), max |da|, the clamp share and the roughness of
the commands the plant was given (per run ``roughness``: RMS per-period
change and high-frequency share per joint, core/roughness.py; per plant
``roughness_ratio``, residual over base); writes JSON and a PNG.
The ONNX model runs through the runtime's policy step
(:class:`~residual_control.core.step.PolicyStep`: observation, model, the
training-envelope check at its default debounce, 0.1 s) on the env's state
(:class:`RuntimePolicy`): ``residual.envelope`` counts the steps outside, the
envelope fallbacks (``trips``, a zero residual while tripped) and the worst excess.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from .. import params_file
from ..core.roughness import ratio as roughness_ratio, roughness
from .common.config import EnvConfig, EvaluationConfig, resolve_path

if TYPE_CHECKING:
    from residual_control.sim.plant import PlantParams

DEFAULT_PARAMS_FILE = "config/residual_control.yaml"
#: The evaluation of the training configs (their ``evaluation`` section and the env's delay).
DEFAULT_REFERENCE = EvaluationConfig.reference
DEFAULT_SECONDS = EvaluationConfig.seconds
DEFAULT_DELAY = EnvConfig.residual_delay_steps

#: The acceptance plants: real.yaml plus two more inside the randomization ranges.
# Plants inside the training ranges the shipped model is judged on (config/plants/*.yaml).
ACCEPTANCE_PLANTS: dict = {name: f"config/plants/{name}.yaml" for name in ("real", "heavy_weak", "light_strong", "mid")}


def robot_evaluation(path: str = DEFAULT_PARAMS_FILE) -> tuple[dict, str | None]:
    """Return the evaluation plants and reference of the robot of the params file at ``path``.

    The plants: every plant file (``*.yaml`` but ``nominal.yaml``) in the folder of the robot's demo
    plant (robot.yaml ``plant``): for the built-in arm config/plants/{real,heavy_weak,light_strong,mid},
    :data:`ACCEPTANCE_PLANTS`. A plant file with an effect the simulator leaves out on
    (``PlantParams.has_effects``: a "real robot" such as real_gap.yaml) is no acceptance plant of a
    simulation-trained model and is left out (evaluate it with ``--plant``). The reference: robot.yaml
    ``reference`` (None: the caller's default).
    """
    from residual_control.robot.folder import load_robot

    pf = params_file.load(resolve_path(path))
    robot = load_robot(params_file.node_params(pf, "base_controller").get("robot") or None)
    if robot.plant is None:
        return dict(ACCEPTANCE_PLANTS), str(robot.reference) if robot.reference else None
    plants = {p.stem: str(p) for p in sorted(robot.plant.parent.glob("*.yaml"))
              if p.stem != "nominal" and not load_plant(p).has_effects}
    return plants, str(robot.reference) if robot.reference else None


def load_reference_spec(path: str = DEFAULT_REFERENCE, kind: str | None = None) -> dict:
    """Return the trajectory spec of the reference publisher's params file (sinusoid or min_jerk)."""
    data = params_file.load(resolve_path(path))
    p = params_file.section(data, "reference_publisher") or data
    kind = kind or p.get("trajectory_type", "sinusoid")
    if kind == "sinusoid":
        return {"type": "sinusoid", "center": p["center"], "amplitude": p["amplitude"],
                "frequency_hz": p["frequency_hz"], "phase": p.get("phase", [0.0] * len(p["center"]))}
    return {"type": "min_jerk", "waypoints": p["waypoints"], "segment_duration": p["segment_duration"],
            "cycle": bool(p.get("cycle", True)), "n_joints": len(p.get("joints", [0, 0]))}


def load_plant(plant) -> "PlantParams":
    from residual_control.sim.plant import PlantParams

    if isinstance(plant, PlantParams):
        return plant
    if isinstance(plant, Mapping):
        return PlantParams.from_mapping(plant)
    return PlantParams.from_yaml(resolve_path(plant))


def rollout(residual_fn: "Callable[[np.ndarray], np.ndarray] | RuntimePolicy | None", plant, trajectory: Mapping,
            seconds: float = DEFAULT_SECONDS, params_file: str = DEFAULT_PARAMS_FILE, delay: int = DEFAULT_DELAY,
            observation_names: Sequence[str] | None = None, seed: int = 0, record: bool = False,
            observation_lowpass_hz: float = 0.0) -> dict:
    """One closed-loop run.

    ``residual_fn(obs) -> da`` in N m (None: base alone), or a :class:`RuntimePolicy` (the runtime's
    policy step on the env's state). ``roughness``: of the commands the plant was given, one per period
    (:func:`residual_control.core.roughness.roughness`: RMS per-period change in N m, share of the power
    above its cut-off, per joint). ``observation_lowpass_hz``: the low-pass of the observations a
    ``residual_fn`` is given (a torch student trained with ``env.observation_lowpass_hz``; a
    :class:`RuntimePolicy` runs the model's own).
    """
    from .env import ResidualEnv

    env = ResidualEnv(params_file, plant=load_plant(plant), trajectory=trajectory, episode_seconds=seconds,
                      residual_delay_steps=delay, observation_names=observation_names, seed=seed,
                      observation_lowpass_hz=observation_lowpass_hz)
    obs, _ = env.reset(seed=seed)
    errs, das, commands = [], [], []
    rec: dict = {"t": [], "q": [], "q_ref": [], "da": [], "a_base": [], "command": []}
    clamped = 0
    done = False
    while not done:
        if residual_fn is None:
            da = np.zeros(env.n)
        else:
            da = np.asarray(residual_fn(env) if isinstance(residual_fn, RuntimePolicy) else residual_fn(obs),
                            dtype=float).reshape(-1)
        das.append(da)
        clamped += int(np.any(np.abs(da) > env.residual_limit + 1e-9))
        obs, _r, term, trunc, info = env.step(da / env.residual_limit)
        errs.append(info["error"])
        commands.append(np.asarray(info["command"], dtype=float))
        if record:
            rec["t"].append(env.time)
            rec["q"].append(env.plant.q)
            rec["q_ref"].append(env.trajectory.sample(env.time)[0])
            rec["da"].append(info["applied_residual"])
            rec["a_base"].append(info["a_base"])
            rec["command"].append(info["command"])
        done = term or trunc
    e = np.asarray(errs)
    out = {"rmse_per_joint": np.sqrt(np.mean(e ** 2, axis=0)).tolist(),
           "rmse": float(np.sqrt(np.mean(e ** 2))),
           "max_abs_error": np.max(np.abs(e), axis=0).tolist(),
           "max_abs_residual": np.max(np.abs(np.asarray(das)), axis=0).tolist(),
           "clamped_share": clamped / max(1, len(das)), "steps": len(das), "terminated": bool(term),
           "roughness": roughness(np.asarray(commands).reshape(len(commands), env.n), env.dt)}
    if record:
        out["trace"] = {k: np.asarray(v) for k, v in rec.items()}
    return out


def compare(residual_fn, plant, trajectory, seconds=DEFAULT_SECONDS, params_file=DEFAULT_PARAMS_FILE,
            delay=DEFAULT_DELAY,
            observation_names=None, seed=0, record=False, observation_lowpass_hz: float = 0.0) -> dict:
    base = rollout(None, plant, trajectory, seconds, params_file, delay, observation_names, seed, record)
    res = rollout(residual_fn, plant, trajectory, seconds, params_file, delay, observation_names, seed, record,
                  observation_lowpass_hz)
    return {"base": base, "residual": res, "ratio": res["rmse"] / base["rmse"],
            "roughness_ratio": roughness_ratio(res["roughness"], base["roughness"])}


def compare_plants(policy: Mapping, plants: Mapping[str, object], trajectory: Mapping,
                   seconds: float = DEFAULT_SECONDS, params_file: str = DEFAULT_PARAMS_FILE, delay: int = DEFAULT_DELAY,
                   observation_names=None, seed: int = 0, record: bool = False, rollouts=None,
                   progress: bool = False, observation_lowpass_hz: float = 0.0) -> dict:
    """Return :func:`compare` on each plant (name -> result), the plants run where ``rollouts`` runs tasks.

    ``policy``: ``{"model": ONNX path}`` (the runtime's policy step, :class:`RuntimePolicy`, a fresh one
    per plant; its envelope counts in ``residual.envelope``) or ``{"student": state}`` (a torch network,
    :func:`~.common.parallel.net_state`). Each plant's result depends only on its task, so it is the same
    wherever it ran.
    """
    from .common.parallel import Rollouts

    tasks = [{"policy": dict(policy), "plant": plant, "trajectory": dict(trajectory), "seconds": seconds,
              "params_file": params_file, "delay": delay, "observation_names": observation_names, "seed": seed,
              "record": record, "observation_lowpass_hz": observation_lowpass_hz} for plant in plants.values()]
    rollouts = rollouts or Rollouts()
    if rollouts.parallel or not progress:
        results = rollouts.map(_compare_task, tasks)
    else:
        from tqdm import tqdm

        results = [_compare_task(t) for t in tqdm(tasks, desc="evaluate")]
    return dict(zip(plants, results))


def _compare_task(task: dict) -> dict:
    """One plant of :func:`compare_plants`."""
    from .common.parallel import net_from_state

    policy = task["policy"]
    if "model" in policy:
        fn = RuntimePolicy(policy["model"], task["params_file"])
    else:
        fn = torch_residual_fn(net_from_state(policy["student"]))
    result = compare(fn, task["plant"], task["trajectory"], task["seconds"], task["params_file"], task["delay"],
                     task["observation_names"], task["seed"], task["record"],
                     0.0 if "model" in policy else task.get("observation_lowpass_hz", 0.0))
    if isinstance(fn, RuntimePolicy):
        result["residual"]["envelope"] = fn.stats
    return result


#: The runtime's default envelope_debounce (s).
ENVELOPE_DEBOUNCE = 0.1


class RuntimePolicy:
    """The runtime's policy step on a :class:`ResidualEnv`'s state: ``policy(env) -> da`` (N m).

    The model is loaded and validated against the params file as the policy node
    does (:class:`~residual_control.core.step.LoadedPolicy`, envelope check on
    with ``debounce``, no extra margin); each call feeds the env's reference and
    perception (refreshed by the env, never lost) to the core
    :class:`~residual_control.core.step.PolicyStep` and runs it on the env's
    measured state and base action at the env's time. While the envelope check
    is tripped the node publishes no residual: here the residual is zero.
    ``stats`` counts ``outside_steps``, ``tripped_steps``, ``trips`` (envelope
    fallbacks) and the ``worst`` excess (relative to the feature's range). A bad
    input or a model error stops the evaluation (ResidualControlError).
    """

    def __init__(self, model_path: str, params_file: str = DEFAULT_PARAMS_FILE,
                 debounce: float = ENVELOPE_DEBOUNCE) -> None:
        from residual_control.core.step import LoadedPolicy, PolicyStep

        from .export import expectations_from_params

        expect = expectations_from_params(params_file)
        model = LoadedPolicy(str(model_path), "", expect)
        model.configure_envelope(True, debounce, 0.0)
        self.step = PolicyStep(model, expect.joints, math.inf)
        self.runner = model.runner
        self.stats = {"envelope": model.envelope is not None, "debounce_s": debounce, "outside_steps": 0,
                      "tripped_steps": 0, "trips": 0, "worst": None}
        self._worst = 0.0

    def __call__(self, env) -> np.ndarray:
        from residual_control.core.errors import ResidualControlError
        from residual_control.core.step import Skip

        step = self.step
        step.reference.set(env.q_ref, env.qd_ref, env.time)  # stamped: the reference acceleration needs it
        step.set_perception(env.perception, env.perception_time)
        out = step.step(env.q_meas, env.qd_meas, env.a_base, env.time)
        if out.skip not in (None, Skip.OUT_OF_ENVELOPE):
            raise ResidualControlError(f"evaluation of {step.model.path} at t = {env.time:.3f} s: {out.why}")
        monitor = step.model.monitor
        if monitor is not None:
            check = monitor.last
            self.stats["trips"] = step.envelope_trips
            if check.outside:
                self.stats["outside_steps"] += 1
                rel = check.excess / (check.high - check.low)
                if rel > self._worst:
                    self._worst = rel
                    self.stats["worst"] = {"feature": check.feature, "value": check.value, "low": check.low,
                                           "high": check.high, "excess": check.excess, "relative_excess": rel}
        if out.residual is None:
            self.stats["tripped_steps"] += 1
            return np.zeros(len(env.joints))
        return out.residual[[list(out.names).index(j) for j in env.joints]]


def torch_residual_fn(net):
    import torch

    def fn(obs):
        with torch.no_grad():
            return net(torch.as_tensor(np.asarray(obs, dtype=np.float32)[None, :]))[0].numpy().astype(float)

    return fn


def measure_latency(model_path: str, n_obs: int, iters: int = 5000) -> dict:
    """Single-observation onnxruntime latency on one thread (the runtime's session options)."""
    from residual_control.core.policy import make_session

    sess = make_session(str(model_path))
    x = np.zeros((1, n_obs), dtype=np.float32)
    rng = np.random.default_rng(0)
    for _ in range(200):
        sess.run(["residual"], {"observation": x})
    times = np.empty(iters)
    for i in range(iters):
        x[0] = rng.normal(0, 1, n_obs)
        t0 = time.perf_counter_ns()
        sess.run(["residual"], {"observation": x})
        times[i] = (time.perf_counter_ns() - t0) / 1e3
    return {"p50_us": float(np.percentile(times, 50)), "p99_us": float(np.percentile(times, 99)),
            "max_us": float(times.max()), "iters": iters}


def plot_comparison(results: Mapping[str, dict], plot_path: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(len(names), 2, figsize=(12, 3.2 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        r = results[name]
        tb, tr = r["base"]["trace"], r["residual"]["trace"]
        for j in range(2):
            ax = axes[row, j]
            ax.plot(tb["t"], tb["q_ref"][:, j], "k--", lw=1, label="reference")
            ax.plot(tb["t"], tb["q"][:, j], "C0", lw=1, label=f"base (RMSE {r['base']['rmse_per_joint'][j]:.3f})")
            ax.plot(tr["t"], tr["q"][:, j], "C3", lw=1,
                    label=f"base+residual (RMSE {r['residual']['rmse_per_joint'][j]:.3f})")
            ax.set_title(f"{name}: joint {j}  overall ratio {r['ratio']:.2f}")
            ax.set_xlabel("t [s]")
            ax.set_ylabel("q [rad]")
            ax.legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot_path, dpi=80)
    plt.close(fig)


def evaluate_model(model_path: str, plants: Mapping[str, object] | Sequence[str] | str | None = None,
                   json_path: str | None = None, plot_path: str | None = None,
                   params_file: str = DEFAULT_PARAMS_FILE, reference: str | None = None,
                   seconds: float = DEFAULT_SECONDS, delay: int = DEFAULT_DELAY, seed: int = 0,
                   latency: bool = True,
                   progress: bool = True, rollouts=None) -> dict:
    """Evaluate an ONNX model (through the runtime's policy step, :class:`RuntimePolicy`) on one or more plants.

    ``rollouts``: where the plants run (:class:`~.common.parallel.Rollouts`; default one after the other here).
    """
    if plants is None:
        plants, robot_reference = robot_evaluation(params_file)
        if reference is None:
            reference = robot_reference or DEFAULT_REFERENCE
    elif isinstance(plants, str):
        plants = {Path(plants).stem: plants}
    elif not isinstance(plants, Mapping):
        plants = {Path(p).stem: p for p in plants}
    if reference is None:
        reference = robot_evaluation(params_file)[1] or DEFAULT_REFERENCE
    runner = RuntimePolicy(model_path, params_file).runner
    traj = load_reference_spec(reference)
    results = compare_plants({"model": str(model_path)}, plants, traj, seconds, params_file, delay,
                             runner.contract.observation_names, seed, record=plot_path is not None,
                             rollouts=rollouts, progress=progress)
    for name, plant in plants.items():
        results[name]["plant"] = load_plant(plant).as_dict()
    if plot_path:
        plot_comparison(results, plot_path, title=f"{Path(model_path).name} on {reference}")
    for r in results.values():
        for k in ("base", "residual"):
            r[k].pop("trace", None)
    report = {"model": str(model_path), "sha256": runner.sha256, "reference": traj, "seconds": seconds,
              "residual_delay_steps": delay, "params_file": params_file, "plants": results,
              "observation_names": list(runner.contract.observation_names)}
    if latency:
        report["inference_latency"] = measure_latency(model_path, runner.n_obs)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return report
