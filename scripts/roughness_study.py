#!/usr/bin/env python3
"""Where the residual's command roughness comes from, and what smooths it (docs/roughness.md).

Four subcommands; all but ``ensemble`` on the built-in arm (planar2), config/reference.yaml, 20 s at 100 Hz:

``diagnose MODEL.onnx``
    The model's roughness with the sensor noise and the perception noise switched off; the privileged
    expert as the residual; the model (through the runtime's policy step) computed along the expert's
    closed loop (the expert drives the plant, the model's output is not applied), with and without noise
    (``--expert-kd``: the expert's extra_kd);
    and the command that would track perfectly (the true plant's inverse dynamics along the reference,
    with its viscous and Coulomb friction, divided by its actuator gain).

``lowpass MODEL.onnx [--cutoffs 0,20,10,5]``
    The model with a first-order low-pass of each cut-off (Hz; 0: none) on its residual, applied after
    the model (not trained with it): RMSE ratio and roughness against the base.

``ensemble CHECKPOINT... [--params P]``
    Trained students' outputs averaged (torch), against the first alone, on the evaluation plants of the
    robot of ``--params`` (e.g. four ``train bc --robot fer --seed K`` runs with ``--params
    robots/fer/params.yaml``).

``train VARIANT --out DIR``
    Trains a BC/DAgger student with ``--config`` (default the quick recipe) and one change, then evaluates
    the torch student on the robot's evaluation plants: RMSE ratio and command roughness against the base.
    Variants: ``plain`` (the config as it is: ``--weight`` sets ``bc.smoothness_weight``, the option of
    ``train bc``), ``true_state`` (expert labels from the noise-free state), ``filtered`` (expert labels
    low-pass filtered along each episode, zero phase, ``--cutoff`` Hz), ``sobolev`` (``--weight`` times the
    squared difference between the student's and the expert's change from a state to the next),
    ``noise`` (``--weight`` times the squared change of the output under Gaussian input noise of
    ``--sigma`` times each feature's standard deviation), ``closed_loop`` (``--weight`` times the squared
    change of the output between consecutive states of the previous round's student driving the plant
    alone, without exploration noise: ``--closed-loop-episodes`` rollouts per round, unlabelled), ``second``
    (``--weight`` times the squared second difference of the output over three consecutive states of an
    episode: against the plain term it weighs a 10 Hz ringing about 400 times as much as a 0.5 Hz change).
    ``--expert-kd`` and ``--expert-kp``
    set the expert's extra_kd and extra_kp,
    ``--noise-std`` the exploration noise (bc.noise_std), ``--hidden`` the network's hidden layers
    (``--activation`` its activation),
    ``--drop`` observation sources left out of the student's input (``ed,qd,a_base``: no velocity),
    ``--privileged-plant`` the episode's true plant parameters appended to the input (what no robot gives:
    the bound of what an input history could tell the student), ``--observation-lowpass`` the whole input
    through a first-order low-pass (Hz), ``--seeds K`` an ensemble: K students (seeds 0 to K-1), their
    outputs averaged (seed 0 alone reported beside it).

Runs with one torch thread; writes ``--json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PARAMS = "config/residual_control.yaml"
PLANTS = ("real", "heavy_weak", "light_strong", "mid")


def _rms_step(a: np.ndarray) -> list:
    return np.sqrt(np.mean(np.diff(a, axis=0) ** 2, axis=0)).tolist()


def _env(plant: dict, perception_noise: float | None = None):
    from residual_control.training.env import ResidualEnv
    from residual_control.training.evaluate import load_reference_spec

    kw = {} if perception_noise is None else {"perception_noise_std": perception_noise}
    return ResidualEnv(PARAMS, plant=plant, trajectory=load_reference_spec("config/reference.yaml"),
                       episode_seconds=20.0, seed=0, **kw)


def _plant(name: str, sensor_noise: float | None = None) -> dict:
    import yaml

    d = yaml.safe_load((ROOT / "config" / "plants" / f"{name}.yaml").read_text())
    if sensor_noise is not None:
        d["sensor_noise_std"] = sensor_noise
    return d


def _closed_loop(env, residual) -> tuple[float, np.ndarray]:
    """Run ``residual(env, obs) -> da`` (N m) for the env's episode; (RMSE, commands)."""
    obs, _ = env.reset(seed=0)
    errs, cmds, done = [], [], False
    while not done:
        obs, _r, term, trunc, info = env.step(residual(env, obs) / env.residual_limit)
        errs.append(info["error"])
        cmds.append(info["command"])
        done = term or trunc
    return float(np.sqrt(np.mean(np.asarray(errs) ** 2))), np.asarray(cmds)


def _feedforward(name: str) -> np.ndarray:
    """Return the true plant's torque along the reference, per period (no feedback: what tracks perfectly)."""
    from residual_control.training.bc import true_model

    env = _env(_plant(name))
    env.reset(seed=0)
    model, p = true_model(env), env.plant_params
    friction = env.plant.nominal_frictionloss * p.friction_scale
    out = []
    for k in range(1, int(round(20.0 / env.dt)) + 1):
        q, qd, qdd = env.trajectory.sample(k * env.dt)
        out.append((model.inverse_dynamics(q, qd, qdd) + friction * np.tanh(qd / 0.05)) / p.actuator_gain)
    return np.asarray(out)


def diagnose(model: str, expert_kd: float | None = None) -> dict:
    from residual_control.training.bc import expert_residual
    from residual_control.training.common.config import ExpertConfig
    from residual_control.training.evaluate import RuntimePolicy

    expert_cfg = ExpertConfig() if expert_kd is None else ExpertConfig(extra_kd=(expert_kd, expert_kd))
    out: dict = {"model": model, "plants": {},
                 "expert": {"extra_kp": list(expert_cfg.extra_kp), "extra_kd": list(expert_cfg.extra_kd)}}
    for name in ("real", "light_strong", "mid"):
        res: dict = {}
        for label, sensor, perception in (("noise", None, None), ("no_sensor_noise", 0.0, None),
                                          ("no_perception_noise", None, 0.0), ("no_noise", 0.0, 0.0)):
            rb, cb = _closed_loop(_env(_plant(name, sensor), perception), lambda env, obs: np.zeros(env.n))
            policy = RuntimePolicy(model, PARAMS)
            rr, cr = _closed_loop(_env(_plant(name, sensor), perception), lambda env, obs: policy(env))
            re, ce = _closed_loop(_env(_plant(name, sensor), perception),
                                  lambda env, obs: expert_residual(env, expert_cfg))
            expert_da, student_da = [], []
            shadow = RuntimePolicy(model, PARAMS)

            def along(env, obs):
                e = expert_residual(env, expert_cfg)
                student_da.append(shadow(env))
                expert_da.append(e)
                return e

            _closed_loop(_env(_plant(name, sensor), perception), along)
            res[label] = {
                "base_rms_step": _rms_step(cb), "model_ratio": rr / rb,
                "model_rms_step_x_base": (np.asarray(_rms_step(cr)) / _rms_step(cb)).tolist(),
                "expert_ratio": re / rb, "expert_rms_step_x_base": (np.asarray(_rms_step(ce)) / _rms_step(cb)).tolist(),
                "along_expert": {"expert_da_rms_step": _rms_step(np.asarray(expert_da)),
                                 "student_da_rms_step": _rms_step(np.asarray(student_da))}}
            print(name, label, json.dumps(res[label]), flush=True)
        res["feedforward_rms_step_x_base"] = (np.asarray(_rms_step(_feedforward(name)))
                                              / res["noise"]["base_rms_step"]).tolist()
        out["plants"][name] = res
    return out


def lowpass(model: str, cutoffs: list) -> dict:
    """Evaluate the model with a first-order low-pass on its residual (after the model, not trained with it)."""
    import math

    from residual_control.training.evaluate import RuntimePolicy, compare, load_reference_spec

    traj = load_reference_spec("config/reference.yaml")
    out: dict = {"model": model, "cutoffs_hz": {}}
    for fc in cutoffs:
        res = {}
        for name in PLANTS:
            policy = RuntimePolicy(model, PARAMS)
            alpha = 1.0 if fc <= 0 else 0.01 / (1.0 / (2 * math.pi * fc) + 0.01)
            held: list = []

            class Filtered(RuntimePolicy):
                def __init__(self) -> None:  # noqa: D107 (the policy above does the work)
                    pass

                def __call__(self, env):
                    x = policy(env)
                    held.append(x if not held else held[-1] + alpha * (x - held[-1]))
                    return held[-1]

            r = compare(Filtered(), f"config/plants/{name}.yaml", traj, 20.0, PARAMS, record=True)
            # where the change per period sits: the applied residual's and the base action's own (RMS, N m)
            parts = (("applied_residual", "residual", "da"), ("a_base", "residual", "a_base"),
                     ("a_base_alone", "base", "a_base"))
            split = {part: _rms_step(np.asarray(r[run]["trace"][key])) for part, run, key in parts}
            res[name] = {"ratio": r["ratio"], "rms_step_x_base": r["roughness_ratio"]["rms_step"],
                         "rms_step_parts": split}
            print(f"low-pass {fc:g} Hz {name:12s} ratio {r['ratio']:.3f} rms_step x base "
                  f"{np.round(r['roughness_ratio']['rms_step'], 2).tolist()}; rms_step applied residual "
                  f"{np.round(split['applied_residual'], 3).tolist()}, base action "
                  f"{np.round(split['a_base'], 3).tolist()} (alone {np.round(split['a_base_alone'], 3).tolist()})",
                  flush=True)
        out["cutoffs_hz"][str(fc)] = res
    return out


def ensemble(checkpoints: list, params: str) -> dict:
    """Evaluate the averaged output of trained students (torch, no envelope check) against the first alone.

    On the evaluation plants and reference of the robot of ``params`` (as ``evaluate`` picks them).
    """
    from residual_control.training.common.nets import load_checkpoint
    from residual_control.training.evaluate import load_reference_spec, robot_evaluation, torch_residual_fn

    plants, reference = robot_evaluation(params)
    traj = load_reference_spec(reference or "config/reference.yaml")
    loaded = [load_checkpoint(c) for c in checkpoints]
    students = [torch_residual_fn(net) for net, _meta in loaded]
    names = loaded[0][1]["observation_names"]
    out: dict = {"checkpoints": list(checkpoints), "params_file": params, "reference": reference}
    for key, fns in (("first_alone", students[:1]), ("averaged", students)):
        out[key] = {name: _averaged(fns, plant, traj, params, f"students {len(fns)} {name:12s}", names)
                    for name, plant in plants.items()}
    return out


def _averaged(students: list, plant, traj, params: str, label: str, observation_names=None) -> dict:
    """Compare the students' averaged output (torch residual functions) with the base on ``plant``; print a line."""
    from residual_control.training.evaluate import compare

    r = compare(lambda obs: np.mean([f(obs) for f in students], axis=0), plant, traj, 20.0, params, 1,
                observation_names)
    print(f"{label} ratio {r['ratio']:.3f} rms_step x base {np.round(r['roughness_ratio']['rms_step'], 2).tolist()}",
          flush=True)
    return {"ratio": r["ratio"], "rms_step_x_base": r["roughness_ratio"]["rms_step"],
            "base": r["base"]["roughness"], "residual": r["residual"]["roughness"]}


def _variant_patches(variant: str, weight: float, cutoff: float, sigma: float, closed_loop_episodes: int = 20) -> None:
    """Patch training/bc.py's expert and fit for the experimental variants (not options of train bc)."""
    import torch

    from residual_control.training import bc

    if variant == "true_state":
        expert = bc.expert_residual

        def expert_true(env, cfg=bc.ExpertConfig()):
            measured = env.q_meas, env.qd_meas
            env.q_meas, env.qd_meas = env.plant.q, env.plant.qd
            try:
                return expert(env, cfg)
            finally:
                env.q_meas, env.qd_meas = measured

        bc.expert_residual = expert_true
    if variant == "filtered":
        from scipy.signal import butter, filtfilt

        collect = bc.collect

        def collect_filtered(env, student, expert_cfg, episodes, rng, beta, noise_std, progress=None, expert=None,
                             plant=None, next_valid=None):
            obs, labels = [], []
            for _ in range(episodes):
                o, lab = collect(env, student, expert_cfg, 1, rng, beta, noise_std, progress, expert, plant,
                                 next_valid)
                if len(lab) > 15:
                    b, a = butter(2, cutoff / (0.5 / env.dt))
                    lab = np.clip(filtfilt(b, a, lab, axis=0), -1.0, 1.0).astype(np.float32)
                obs.append(o)
                labels.append(lab)
            return np.concatenate(obs), np.concatenate(labels)

        bc.collect = collect_filtered
    closed_loop: list = []  # per episode: the observations of the current student's own noise-free rollout
    if variant == "closed_loop":
        collect_plain = bc.collect
        rng_cl = np.random.default_rng(12345)

        def collect_with_closed_loop(env, student, expert_cfg, episodes, rng, beta, noise_std, progress=None,
                                     expert=None, plant=None, next_valid=None):
            out = collect_plain(env, student, expert_cfg, episodes, rng, beta, noise_std, progress, expert, plant,
                                next_valid)
            if student is not None:
                for _ in range(closed_loop_episodes):
                    obs, _ = env.reset(seed=int(rng_cl.integers(2**31)))
                    seq, done = [obs.copy()], False
                    while not done:
                        with torch.no_grad():
                            act = student.unit_action(torch.as_tensor(obs[None, :]))[0].numpy()
                        obs, _r, term, trunc, _ = env.step(act)
                        done = term or trunc
                        if not term:
                            seq.append(obs.copy())
                    closed_loop.append(np.asarray(seq, np.float32))
            return out

        bc.collect = collect_with_closed_loop
    if variant in ("sobolev", "noise", "closed_loop", "second"):
        def fit(net, obs, labels, epochs, lr, batch, seed, weight_decay, weights=None, refit_normalizer=True,
                smoothness_weight=0.0, next_valid=None):
            if refit_normalizer:
                net.normalizer.fit(obs)
            gen = torch.Generator().manual_seed(seed)
            x, y = torch.as_tensor(obs), torch.as_tensor(labels)
            valid = torch.as_tensor(np.asarray(next_valid, bool).astype(np.float32))
            if closed_loop:
                cl_a = torch.as_tensor(np.concatenate([e[:-1] for e in closed_loop]))
                cl_b = torch.as_tensor(np.concatenate([e[1:] for e in closed_loop]))
            opt = torch.optim.Adam(net.body.parameters(), lr=lr, weight_decay=weight_decay)
            n = len(x)
            steps = max(1, n // batch)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
            net.train()
            loss = torch.zeros(())
            for _ in range(epochs):
                perm = torch.randperm(n, generator=gen)
                for i in range(steps):
                    idx = perm[i * batch:(i + 1) * batch]
                    out = net.unit_action(x[idx])
                    loss = torch.mean((out - y[idx]) ** 2)
                    if variant == "sobolev":
                        nxt = torch.clamp(idx + 1, max=n - 1)
                        d = ((net.unit_action(x[nxt]) - out) - (y[nxt] - y[idx])) ** 2
                        v = valid[idx]
                        loss = loss + weight * torch.sum(d.mean(dim=1) * v) / torch.clamp(torch.sum(v), min=1.0)
                    elif variant == "second":
                        n1, n2 = torch.clamp(idx + 1, max=n - 1), torch.clamp(idx + 2, max=n - 1)
                        v = valid[idx] * valid[n1]
                        d2 = (net.unit_action(x[n2]) - 2 * net.unit_action(x[n1]) + out) ** 2
                        loss = loss + weight * torch.sum(d2.mean(dim=1) * v) / torch.clamp(torch.sum(v), min=1.0)
                    elif variant == "noise":
                        noisy = x[idx] + sigma * net.normalizer.std * torch.randn(x[idx].shape, generator=gen)
                        loss = loss + weight * torch.mean((net.unit_action(noisy) - out) ** 2)
                    elif closed_loop:
                        j = torch.randint(0, len(cl_a), (len(idx),), generator=gen)
                        loss = loss + weight * torch.mean((net.unit_action(cl_b[j]) - net.unit_action(cl_a[j])) ** 2)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
            net.eval()
            return float(loss.detach())

        bc.fit = fit


def _append_to_observation(env_mod, prefix: str, values, reset, fields=None) -> None:
    """Append ``<prefix>/<name>`` to the env's observation in training and evaluation alike.

    ``values(env, q, q_ref)``: the appended values at each observation (one per joint, or one per name of
    ``fields``); ``reset(env)``: at each reset, first.
    """
    import gymnasium as gym

    cls = env_mod.ResidualEnv
    init, env_reset = cls.__init__, cls.reset

    class Appended:
        def __init__(self, inner, env) -> None:
            self.inner, self.env = inner, env
            self.size = inner.size + len(env.joints if fields is None else fields)

        def assemble(self, q, qd, q_ref, qd_ref, a_base, perception):
            return np.concatenate([self.inner.assemble(q, qd, q_ref, qd_ref, a_base, perception),
                                   values(self.env, q, q_ref)]).astype(np.float32)

    def patched_init(self, *a, **k):
        init(self, *a, **k)
        self.assembler = Appended(self.assembler, self)
        self.observation_names = self.observation_names + tuple(
            f"{prefix}/{j}" for j in (self.joints if fields is None else fields))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.assembler.size,), np.float32)

    def patched_reset(self, **kw):
        reset(self)
        return env_reset(self, **kw)

    cls.__init__, cls.reset = patched_init, patched_reset


PRIVILEGED = ("payload_mass", "friction_scale", "damping_scale", "actuator_gain", "actuator_latency")


def _add_privileged_plant(env_mod) -> None:
    """Append plant/<parameter> to the env's observation: the episode's true plant parameters (privileged).

    What no runtime input gives: the bound of what an input history (an adaptation module) could tell the student.
    """
    def values(env, q, q_ref):
        return [float(getattr(env.plant_params, f)) for f in PRIVILEGED]

    _append_to_observation(env_mod, "plant", values, lambda env: None, PRIVILEGED)


def _lowpass_observation(env_mod, hz: float) -> None:
    """Pass the student's whole observation through a first-order low-pass of ``hz`` (training and evaluation)."""
    import math

    cls = env_mod.ResidualEnv
    init, env_reset = cls.__init__, cls.reset

    class Filtered:
        def __init__(self, inner, env) -> None:
            self.inner, self.env, self.size = inner, env, inner.size

        def assemble(self, *args):
            x = np.asarray(self.inner.assemble(*args), float)
            state = getattr(self.env, "observation_lowpass", None)
            alpha = self.env.dt / (1.0 / (2 * math.pi * hz) + self.env.dt)
            self.env.observation_lowpass = x.copy() if state is None else state + alpha * (x - state)
            return self.env.observation_lowpass.astype(np.float32)

    def patched_init(self, *a, **k):
        init(self, *a, **k)
        self.assembler = Filtered(self.assembler, self)

    def patched_reset(self, **kw):
        self.observation_lowpass = None
        return env_reset(self, **kw)

    cls.__init__, cls.reset = patched_init, patched_reset


def _add_filtered_error(env_mod, tau: float) -> None:
    """Append e_lp/<joint> to the env's observation: the tracking error through a first-order low-pass of ``tau`` s."""
    def values(env, q, q_ref):
        e = np.asarray(q_ref, float) - np.asarray(q, float)
        state = getattr(env, "error_lowpass", None)
        env.error_lowpass = e.copy() if state is None else state + env.dt / (tau + env.dt) * (e - state)
        return env.error_lowpass

    def reset(env):
        env.error_lowpass = None

    _append_to_observation(env_mod, "e_lp", values, reset)


def _add_previous_applied(env_mod) -> None:
    """Append a_prev/<joint> to the env's observation: the residual the mixer applied last period (unit: / bound).

    A stateful input: the runtime would need it from the mixer's ~/applied_residual (not built; a study).
    """
    def values(env, q, q_ref):
        prev = getattr(env, "applied_residual", None)
        return np.zeros(env.n) if prev is None else np.asarray(prev, float) / env.residual_limit

    def reset(env):
        env.applied_residual = None

    _append_to_observation(env_mod, "a_prev", values, reset)


def train(variant: str, out: str, config: str, weight: float, cutoff: float, sigma: float,
          expert_kd: float | None, noise_std: float | None = None, closed_loop_episodes: int = 20,
          hidden: tuple = (), drop: tuple = (), expert_kp: float | None = None,
          error_filter: float = 0.0, previous_applied: bool = False, privileged: bool = False,
          observation_lowpass: float = 0.0, seeds: int = 1, activation: str = "",
          reference_acceleration: bool = False, rigid_body_at: str = "") -> dict:
    from residual_control.training import bc
    from residual_control.training import env as env_mod
    from residual_control.training.common.config import load_train_config
    from residual_control.training.common.nets import load_checkpoint
    from residual_control.training.evaluate import load_reference_spec, torch_residual_fn

    overrides: dict = {"bc": {}}
    if variant == "plain":
        overrides["bc"]["smoothness_weight"] = weight
    if expert_kd is not None:
        overrides["bc"].setdefault("expert", {})["extra_kd"] = [expert_kd, expert_kd]
    if reference_acceleration:
        overrides["env"] = {"reference_acceleration": True}
    if rigid_body_at:
        overrides["bc"].setdefault("expert", {})["rigid_body_at"] = rigid_body_at
    if expert_kp is not None:
        overrides["bc"].setdefault("expert", {})["extra_kp"] = [expert_kp, expert_kp]
    if noise_std is not None:
        overrides["bc"]["noise_std"] = noise_std
    if hidden:
        overrides["network"] = {"hidden": list(hidden)}
    if activation:
        overrides.setdefault("network", {})["activation"] = activation
    _variant_patches(variant, weight, cutoff, sigma, closed_loop_episodes)
    if drop:
        names = env_mod.default_observation_names

        def fewer(joints, perception_features=()):
            return [n for n in names(joints, perception_features) if n.split("/", 1)[0] not in drop]

        env_mod.default_observation_names = fewer
    if error_filter > 0:
        _add_filtered_error(env_mod, error_filter)
    if previous_applied:
        _add_previous_applied(env_mod)
    if privileged:
        _add_privileged_plant(env_mod)
    if observation_lowpass > 0:
        _lowpass_observation(env_mod, observation_lowpass)
    cfg = load_train_config(config, overrides)
    t0 = time.time()
    students = []
    for seed in range(seeds):  # one student (seed 0) in out, or an ensemble: seed k in out/seed_k
        where = Path(out) if seeds == 1 else Path(out) / f"seed_{seed}"
        bc.train_bc(cfg, str(where), seed=seed, progress=False, evaluate=False)
        net, meta = load_checkpoint(where / "checkpoint.pt")
        students.append(torch_residual_fn(net))
    train_s = time.time() - t0
    traj = load_reference_spec("config/reference.yaml")
    results, single = {}, {}
    for name in PLANTS:
        for got, fns in ((results, students), (single, students[:1])):
            if got is single and seeds == 1:
                continue
            got[name] = _averaged(fns, f"config/plants/{name}.yaml", traj, PARAMS,
                                  f"{variant} weight {weight:g} students {len(fns)} {name:12s}",
                                  meta["observation_names"])
    return {"variant": variant, "weight": weight, "cutoff_hz": cutoff, "sigma": sigma,
            "expert_kd": expert_kd, "expert_kp": expert_kp,
            "noise_std": noise_std, "hidden": list(hidden) or None, "activation": activation or None,
            "observation_left_out": list(drop) or None, "error_filter_s": error_filter or None,
            "previous_applied_input": previous_applied or None, "privileged_plant_input": privileged or None,
            "reference_acceleration_input": reference_acceleration or None,
            "expert_rigid_body_at": rigid_body_at or None,
            "observation_lowpass_hz": observation_lowpass or None, "students_averaged": seeds,
            "seed_0_alone": single or None,
            "closed_loop_episodes": closed_loop_episodes if variant == "closed_loop" else None,
            "config": config, "config_sha256": cfg.sha256, "train_seconds": train_s, "plants": results}


def main(argv=None) -> int:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("diagnose")
    d.add_argument("model")
    d.add_argument("--expert-kd", type=float, default=None, help="the expert's extra_kd (default the config's)")
    lp = sub.add_parser("lowpass")
    lp.add_argument("model")
    lp.add_argument("--cutoffs", default="0,20,10,5", help="Hz, comma-separated (0: no filter)")
    lp.add_argument("--json", default="")
    d.add_argument("--json", default="")
    e = sub.add_parser("ensemble")
    e.add_argument("checkpoints", nargs="+")
    e.add_argument("--params", default=PARAMS, help="the robot's params file (its evaluation plants and reference)")
    e.add_argument("--json", default="")
    t = sub.add_parser("train")
    t.add_argument("variant", choices=("plain", "true_state", "filtered", "sobolev", "noise", "closed_loop",
                                                     "second"))
    t.add_argument("--closed-loop-episodes", type=int, default=20)
    t.add_argument("--hidden", default="", help="network.hidden, comma-separated (default the config's)")
    t.add_argument("--out", required=True)
    t.add_argument("--config", default="config/train_bc_quick.yaml")
    t.add_argument("--weight", type=float, default=0.0)
    t.add_argument("--cutoff", type=float, default=3.0)
    t.add_argument("--sigma", type=float, default=0.05)
    t.add_argument("--expert-kd", type=float, default=None)
    t.add_argument("--expert-kp", type=float, default=None)
    t.add_argument("--noise-std", type=float, default=None, help="bc.noise_std (exploration noise)")
    t.add_argument("--drop", default="", help="observation sources left out, comma-separated (e.g. ed,qd,a_base)")
    t.add_argument("--error-filter", type=float, default=0.0,
                   help="append the tracking error low-passed with this time constant (s) to the observation")
    t.add_argument("--previous-applied", action="store_true",
                   help="append the residual the mixer applied the period before to the observation (stateful)")
    t.add_argument("--privileged-plant", action="store_true",
                   help="append the episode's true plant parameters to the observation (privileged)")
    t.add_argument("--observation-lowpass", type=float, default=0.0,
                   help="pass the whole observation through a first-order low-pass of this cut-off (Hz)")
    t.add_argument("--seeds", type=int, default=1,
                   help="train this many students (seeds 0, 1, ...) and evaluate their averaged output")
    t.add_argument("--activation", default="", help="network.activation (default the config's)")
    t.add_argument("--reference-acceleration", action="store_true",
                   help="the reference acceleration qdd_ref in the observation (env.reference_acceleration)")
    t.add_argument("--rigid-body-at", default="", choices=("", "measured", "reference"),
                   help="bc.expert.rigid_body_at (default the config's)")
    t.add_argument("--json", default="")
    a = p.parse_args(argv)
    if a.cmd == "diagnose":
        doc = diagnose(a.model, a.expert_kd)
    elif a.cmd == "ensemble":
        doc = ensemble(a.checkpoints, a.params)
    elif a.cmd == "lowpass":
        doc = lowpass(a.model, [float(x) for x in a.cutoffs.split(",")])
    else:
        doc = train(a.variant, a.out, a.config, a.weight, a.cutoff, a.sigma, a.expert_kd, a.noise_std,
                    a.closed_loop_episodes, tuple(int(h) for h in a.hidden.split(",") if h),
                    tuple(x for x in a.drop.split(",") if x), a.expert_kp, a.error_filter, a.previous_applied,
                    a.privileged_plant, a.observation_lowpass, a.seeds, a.activation, a.reference_acceleration,
                    a.rigid_body_at)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
