"""Imitation (behaviour cloning + DAgger) of a privileged expert residual.

Expert: computed torque with the TRUE plant (:func:`true_model`: M(q) qdd* + C(q, qd) qd
+ g(q) + true viscous damping, plus the true Coulomb friction smoothed by
tanh(qd_ref / v0)), divided by the true ``actuator_gain``, where
qdd* = qdd_ref + Kp' e + Kd' ed is the reference acceleration plus a stiffer
inner feedback; the base PD stays in the loop, so the expert residual is

    da* = clip(tau_true(q+, qd, qdd*) / gain + friction - g_nominal(q), +-eps)

evaluated one control period ahead (q+ = q + qd * delay * dt, reference at
t + delay * dt) because the residual is applied one period late. Its
closed-loop quality is limited by the clip at residual_limit (see
models/README.md for the measured numbers).

The student (:class:`ResidualPolicyNet`) sees only the runtime observation
(no plant parameters except the noisy payload perception, no qdd_ref), so
data come from DAgger: round 0 rolls the expert out with exploration noise,
later rounds roll out the current student (mixed with the expert with
probability beta_r = beta0^r, plus noise) and label every visited state with
the expert. The student is refit on the aggregate data after every round
(MSE on da / eps).

The checkpoint records the observation envelope (:func:`training_envelope`, the
config's ``envelope`` section): the per-feature range of every observation the
student was fitted on (all rounds) and of base-alone rollouts on the same
randomization, widened by ``margin`` of each range.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from residual_control.core.envelope import compute_envelope

from .common.config import BCTrainConfig, EnvelopeConfig, ExpertConfig, TrainConfig, load_params_file
from .common.logging import CSVLogger
from .common.seeding import seed_everything


def true_model(env):
    """Return the rigid-body model of the env's TRUE plant: its payload and viscous damping (cached per episode)."""
    from residual_control.robot.dynamics import MujocoDynamics

    p, plant = env.plant_params, env.plant
    key = (p.payload_mass, p.damping_scale)
    cached = getattr(env, "_true_model", None)
    if cached is None or cached[0] != key:
        model = MujocoDynamics(plant.compiled, payload_mass=p.payload_mass,
                               viscous_friction=plant.nominal_damping * p.damping_scale)
        env._true_model = cached = (key, model)
    return cached[1]


def expert_residual(env, expert: ExpertConfig = ExpertConfig()) -> np.ndarray:
    """Return the privileged expert's residual (N m, clipped to +-eps) for the env's current state.

    Computed torque on the true plant, with the plant's effects where it has them (extra Coulomb
    friction, the joint spring: :mod:`residual_control.sim.plant`); a plant without effects gives
    the same floats as the rigid-body model alone. ``expert.rigid_body_at`` "reference": the
    rigid-body terms (and the spring) along the reference, the feedback through M(q_ref).
    """
    p = env.plant_params
    model = true_model(env)
    lead = env.delay * env.dt
    q, qd = env.q_meas, env.qd_meas
    qr, qdr, qddr = env.trajectory.sample(env.time + lead)
    qp = q + qd * lead
    feedback = _per_joint(expert.extra_kp, env.n) * (qr - qp) + _per_joint(expert.extra_kd, env.n) * (qdr - qd)
    # the rigid-body terms on the measured state, or along the reference (its noise-free feedforward)
    q_rb = qr if expert.rigid_body_at == "reference" else qp
    friction = env.plant.nominal_frictionloss * p.friction_scale
    spring = np.zeros(env.n)
    for i, name in enumerate(env.joints):
        friction[i] += getattr(p, "coulomb_friction", {}).get(name, 0.0)
        k = getattr(p, "joint_stiffness", {}).get(name, 0.0)
        if k:
            spring[i] = k * (q_rb[i] - getattr(p, "joint_rest", {}).get(name, 0.0))
    if expert.rigid_body_at == "reference":
        rigid = model.inverse_dynamics(qr, qdr, qddr) + model.mass_matrix(qr) @ feedback
    else:
        rigid = model.inverse_dynamics(qp, qd, qddr + feedback)
    tau = (rigid + friction * np.tanh(qdr / expert.friction_v0) + spring) / p.actuator_gain
    da = tau - env.base.model.gravity_torque(q) if hasattr(env.base, "model") else tau
    return np.clip(da, -env.residual_limit, env.residual_limit)


def _per_joint(value, n: int) -> np.ndarray:
    """Return a gain given per joint, or one value (or equal values) for every joint (any joint count)."""
    arr = np.asarray(value, dtype=float).reshape(-1)
    if arr.size == n:
        return arr
    if arr.size >= 1 and np.all(arr == arr[0]):
        return np.full(n, float(arr[0]))
    raise ValueError(f"expert gain: expected {n} values (one per joint) or one value, found {arr.tolist()}")


class StudentsExpert:
    """The averaged students (nets.ResidualEnsemble) as the expert of a distillation: ``(env, cfg) -> N m``.

    Picklable (the network's state travels to rollout workers); the residual of the env's observation.
    """

    def __init__(self, net) -> None:
        from .common.parallel import net_state

        self.state = net_state(net)
        self._net = None

    def __getstate__(self) -> dict:
        return {"state": self.state, "_net": None}

    def __call__(self, env, expert_cfg=None) -> np.ndarray:
        import torch

        from .common.parallel import net_from_state

        if self._net is None:
            self._net = net_from_state(self.state)
        with torch.no_grad():
            return self._net(torch.as_tensor(np.asarray(env.obs, np.float32)[None]))[0].numpy().astype(float)


def collect(env, student, expert_cfg: ExpertConfig, episodes: int, rng: np.random.Generator, beta: float,
            noise_std: float, progress=None, expert=None, plant=None, next_valid: list | None = None):
    """Roll out a beta-mixture of expert and student (+ noise); label every state with the expert.

    ``expert(env, expert_cfg)``: the expert residual in N m (default :func:`expert_residual`);
    ``plant(rng)``: the plant of each episode (default: the env's own randomization).
    ``next_valid``: a list to which a bool array per call is appended, True where the next sample is the
    next state of the same episode (the pairs of the smoothness term, :func:`fit`).
    Every episode draws from the one generator ``rng`` (in this process; :func:`collect_parallel`
    gives each episode its own).
    """
    obs_buf, lab_buf, follows = _episodes(env, student, expert_cfg, [rng] * episodes, beta, noise_std, expert,
                                          plant, progress)
    if next_valid is not None:
        next_valid.append(np.asarray(follows, bool))
    return np.asarray(obs_buf, np.float32), np.asarray(lab_buf, np.float32)


def _episodes(env, student, expert_cfg: ExpertConfig, rngs, beta: float, noise_std: float, expert=None,
              plant=None, progress=None) -> tuple[list, list, list]:
    """Run one :func:`_episode` per generator in ``rngs`` (the same one repeated: one stream), concatenated."""
    obs, labels, follows = [], [], []
    for rng in rngs:
        o, lab, f = _episode(env, student, expert_cfg, rng, beta, noise_std, expert, plant)
        obs += o
        labels += lab
        follows += f
        if progress is not None:
            progress.update(1)
    return obs, labels, follows


def _episode(env, student, expert_cfg: ExpertConfig, rng: np.random.Generator, beta: float, noise_std: float,
             expert=None, plant=None) -> tuple[list, list, list]:
    """One DAgger episode: its observations, expert labels (unit action) and next-is-same-episode flags."""
    import torch

    expert = expert or expert_residual
    obs_buf, lab_buf, follows = [], [], []
    options = {"plant": plant(rng)} if plant is not None else None
    obs, _ = env.reset(seed=int(rng.integers(2**31)), options=options)
    done = False
    use_expert_ep = student is None or rng.random() < beta
    while not done:
        label = expert(env, expert_cfg) / env.residual_limit
        obs_buf.append(obs.copy())
        lab_buf.append(label)
        if use_expert_ep:
            act = label
        else:
            with torch.no_grad():
                act = student.unit_action(torch.as_tensor(obs[None, :]))[0].numpy()
        act = np.clip(act + rng.normal(0, noise_std, env.n), -1, 1)
        obs, _r, term, trunc, _ = env.step(act)
        done = term or trunc
        follows.append(not done)
    return obs_buf, lab_buf, follows


def collect_parallel(rollouts, env_cfg, params_file: str, student, expert_cfg: ExpertConfig, episodes: int,
                     seed: int, round_index: int, beta: float, noise_std: float, plant=None,
                     next_valid: list | None = None, expert=None):
    """:func:`collect` with episode k of the round drawing from ``episode_rng(seed, round_index, k)``.

    The episodes run where ``rollouts`` (:class:`~.common.parallel.Rollouts`) runs tasks, in contiguous
    chunks, one per worker; the result is the same for any number of workers, inline, local or Ray.
    ``plant``: as in :func:`collect`, a picklable callable (a module-level function or a partial).
    """
    from .common.parallel import net_state, split

    state = net_state(student)
    tasks = [{"env": env_cfg, "params_file": params_file, "student": state, "expert": expert_cfg, "seed": seed,
              "round": round_index, "episodes": list(chunk), "beta": beta, "noise_std": noise_std, "plant": plant,
              "expert_fn": expert}
             for chunk in split(episodes, rollouts.workers)]
    parts = rollouts.map(_collect_chunk, tasks)
    obs = [o for part in parts for o in part[0]]
    labels = [lab for part in parts for lab in part[1]]
    if next_valid is not None:
        next_valid.append(np.asarray([f for part in parts for f in part[2]], bool))
    return np.asarray(obs, np.float32), np.asarray(labels, np.float32)


def _collect_chunk(task: dict) -> tuple[list, list, list]:
    """Run a worker's share of :func:`collect_parallel`: its episodes, each from its own generator."""
    from .common.parallel import episode_rng, net_from_state
    from .env import make_env_from_config

    env = make_env_from_config(task["env"], task["params_file"], seed=int(task["seed"]))
    rngs = [episode_rng(task["seed"], task["round"], k) for k in task["episodes"]]
    return _episodes(env, net_from_state(task["student"]), task["expert"], rngs, task["beta"], task["noise_std"],
                     task.get("expert_fn"), plant=task["plant"])


def collect_base_alone(env, episodes: int, rng: np.random.Generator) -> np.ndarray:
    """Observations of the base controller alone (zero residual) on randomized plants and references."""
    obs_buf = []
    for _ in range(episodes):
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        done = False
        while not done:
            obs_buf.append(obs.copy())
            obs, _r, term, trunc, _ = env.step(np.zeros(env.n))
            done = term or trunc
    return np.asarray(obs_buf, np.float32)


def training_envelope(env, dagger_obs: np.ndarray, ecfg: EnvelopeConfig, seed: int):
    """Return the observation envelope recorded with the model (see the module docstring).

    The DAgger data set plus ``base_alone_episodes`` rollouts of the base controller alone on
    the same plant and reference randomization: after a fallback the residual resumes from
    the states the base alone reaches, so they must be inside, or a fallback would sustain
    itself. Widened by ``margin`` of each feature's range. Drawn from its own generator
    (seed, 1): the DAgger data and the weights do not depend on it.
    """
    parts = [dagger_obs]
    if ecfg.base_alone_episodes > 0:
        parts.append(collect_base_alone(env, ecfg.base_alone_episodes, np.random.default_rng([seed, 1])))
    return compute_envelope(np.concatenate(parts), env.observation_names, ecfg.margin)


def fit(net, obs: np.ndarray, labels: np.ndarray, epochs: int, lr: float, batch: int, seed: int,
        weight_decay: float, weights: np.ndarray | None = None, refit_normalizer: bool = True,
        smoothness_weight: float | Sequence[float] = 0.0, next_valid: np.ndarray | None = None) -> float:
    """Fit ``net`` (MSE on the unit action; per-sample ``weights`` if given); returns the last batch's loss.

    ``refit_normalizer``: fit the observation normaliser to ``obs`` first (False: a fine-tune keeps it).
    ``smoothness_weight`` > 0 adds the temporal smoothness term: that weight times the mean, over the
    batch's samples whose next sample is the next state of the same episode (``next_valid``, from
    :func:`collect`), of the squared change of the unit action from the state to the next one. It
    penalises a student whose output changes fast along the trajectories (the closed-loop ringing that
    makes the command rough: docs/roughness.md). A sequence gives one weight per output (joint): each
    joint's squared change is weighted by its own, then averaged over the joints as the one number's is.
    """
    import torch

    per_joint = None
    if np.ndim(smoothness_weight) > 0:
        per_joint = np.asarray(smoothness_weight, dtype=np.float32).reshape(-1)
        if labels.ndim != 2 or per_joint.size != labels.shape[1]:
            raise ValueError(f"fit: smoothness_weight per joint: expected {labels.shape[-1]} weights (one per "
                             f"output), found {per_joint.size}: {per_joint.tolist()}")
        smooth = float(per_joint.max())        # > 0: the term is on for some joint
        joint_w = torch.as_tensor(per_joint)
    else:
        smooth = float(smoothness_weight)
    if smooth > 0.0:
        if next_valid is None or len(next_valid) != len(obs):
            raise ValueError(f"fit: smoothness_weight {smooth} needs next_valid, one flag per sample ({len(obs)}), "
                             f"found {None if next_valid is None else len(next_valid)}")
        valid = torch.as_tensor(np.asarray(next_valid, bool).astype(np.float32))
    if refit_normalizer:
        net.normalizer.fit(obs)
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(obs)
    y = torch.as_tensor(labels)
    wt = None if weights is None else torch.as_tensor(np.asarray(weights, np.float32))
    opt = torch.optim.Adam(net.body.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(x)
    steps_per_epoch = max(1, n // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    net.train()
    loss_v = float("nan")
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * batch:(i + 1) * batch]
            if wt is None:
                out = net.unit_action(x[idx])
                loss = torch.mean((out - y[idx]) ** 2)
            else:
                out = net.unit_action(x[idx])
                err = (out - y[idx]) ** 2
                loss = torch.sum(err.mean(dim=1) * wt[idx]) / torch.sum(wt[idx])
            if smooth > 0.0:
                v = valid[idx]
                change = (net.unit_action(x[torch.clamp(idx + 1, max=n - 1)]) - out) ** 2
                if per_joint is None:  # the one number's arithmetic as it was: shipped models' bytes depend on it
                    loss = loss + smooth * torch.sum(change.mean(dim=1) * v) / torch.clamp(torch.sum(v), min=1.0)
                else:
                    loss = loss + torch.sum((change * joint_w).mean(dim=1) * v) / torch.clamp(torch.sum(v), min=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_v = float(loss.detach())
    net.eval()
    return loss_v


def train_bc(cfg: TrainConfig, out_dir: str, seed: int | None = None, episodes: int | None = None,
             progress: bool = True, evaluate: bool = True, workers: int = 1, ray_address: str | None = None) -> dict:
    """Train a BC/DAgger residual; writes ``out_dir/checkpoint.pt``, ``train_log.csv``, ``summary.json``.

    ``workers`` > 1 or ``ray_address``: the DAgger episodes and the evaluation run in parallel
    (:class:`~.common.parallel.Rollouts`), each episode from its own generator (:func:`collect_parallel`):
    the result depends on the seed, not on the number of workers or where they run. ``workers=1``
    without Ray collects in this process from the run's one generator (the stream the shipped models
    were made with; the model's metadata says ``episode_seeding: per_episode`` for the other).
    """
    from .common.parallel import Rollouts

    with Rollouts(workers, ray_address) as rollouts:
        students = _bc_values(cfg).bc.students
        if students == 1:
            return _train_bc(cfg, out_dir, seed, episodes, progress, evaluate, rollouts)
        return _train_ensemble(cfg, out_dir, seed, episodes, progress, evaluate, rollouts, students)


def _train_ensemble(cfg: TrainConfig, out_dir: str, seed: int | None, episodes: int | None, progress: bool,
                    evaluate: bool, rollouts, students: int) -> dict:
    """Train ``students`` students apart (``out_dir/student_<k>``, seed + k) and save their average.

    The ensemble's checkpoint has the first student's metadata but for the network, the seeds, the
    observation envelope (the union of the students': every state any of them was fitted on) and the
    real observations of the export check (all students'). With ``bc.distill`` the average goes to
    ``out_dir/average`` and the model is one more student (``out_dir/distilled``, seed + students)
    trained by DAgger with the average as its expert (:class:`StudentsExpert`): one network.
    """
    from .common.nets import ResidualEnsemble, load_checkpoint, save_checkpoint

    c = _bc_values(cfg)
    seed = int(c.seed if seed is None else seed)
    out = Path(out_dir)
    t0 = time.time()
    members, metas, parts = [], [], []
    for k in range(students):
        part = _train_bc(cfg, str(out / f"student_{k}"), seed + k, episodes, progress, False, rollouts)
        net, meta = load_checkpoint(part["checkpoint"])
        members.append(net)
        metas.append(meta)
        parts.append(part)
    names = metas[0]["observation_names"]
    if any(m["observation_names"] != names for m in metas):
        raise ValueError("bc.students: expected every student to observe the same names, found different ones")
    envelopes = [m.get("observation_envelope") for m in metas]
    meta = dict(metas[0])
    if all(e is not None for e in envelopes):
        meta["observation_envelope"] = {
            **envelopes[0], "low": np.min([e["low"] for e in envelopes], axis=0).tolist(),
            "high": np.max([e["high"] for e in envelopes], axis=0).tolist(),
            "n_samples": int(sum(int(e.get("n_samples", 0)) for e in envelopes))}
    ensemble = ResidualEnsemble(members).eval()
    seeds = [seed + k for k in range(students)]
    summary = {"students": students, "student_seeds": seeds, "episodes": parts[0]["episodes"],
               "samples": int(sum(p["samples"] for p in parts)), "final_loss": [p["final_loss"] for p in parts],
               "config_sha256": cfg.sha256, "seed": seed}
    ckpt = out / "checkpoint.pt"
    if c.bc.distill:  # one more student (seed + students), its expert the average: the model is that student
        (out / "average").mkdir(parents=True, exist_ok=True)
        save_checkpoint(out / "average" / "checkpoint.pt", ensemble, {**meta, "network": ensemble.describe()})
        part = _train_bc(cfg, str(out / "distilled"), seed + students, c.bc.distill_episodes or episodes, progress,
                         False, rollouts, expert=StudentsExpert(ensemble))
        model, meta = load_checkpoint(part["checkpoint"])
        meta.update(seed=seed, distilled_from={"student_seeds": seeds, "distilled_seed": seed + students})
        summary.update(distilled_seed=seed + students, distilled_samples=part["samples"],
                       distilled_final_loss=part["final_loss"])
    else:
        model = ensemble
        meta.update(seed=seed, student_seeds=seeds, network=ensemble.describe(),
                    real_observations=[o for m in metas for o in m.get("real_observations", [])])
    save_checkpoint(ckpt, model, meta)
    summary.update(checkpoint=str(ckpt), train_seconds=round(time.time() - t0, 1))
    if evaluate:
        summary["evaluation"] = evaluate_student(model, c, rollouts=rollouts, observation_names=list(names))
    with open(out / "summary.json", "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def _train_bc(cfg: TrainConfig, out_dir: str, seed: int | None, episodes: int | None, progress: bool,
              evaluate: bool, rollouts, expert=None) -> dict:
    import torch
    from tqdm import tqdm

    from .common.nets import ResidualPolicyNet, save_checkpoint
    from .env import make_env_from_config

    c = _bc_values(cfg)
    seed = int(c.seed if seed is None else seed)
    bcfg = c.bc
    episodes = int(bcfg.episodes if episodes is None else episodes)
    rng = seed_everything(seed, threads=c.torch_threads)
    params_file = c.params_file
    env = make_env_from_config(c.env, params_file, seed=seed)
    rounds = max(1, min(bcfg.dagger_rounds, episodes))
    per_round = [episodes // rounds + (1 if r < episodes % rounds else 0) for r in range(rounds)]
    beta0 = bcfg.beta0
    noise = bcfg.noise_std
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = CSVLogger(out / "train_log.csv")
    obs_all, lab_all, follows = [], [], []
    student = None
    t0 = time.time()
    bar = tqdm(total=episodes, desc=f"bc {episodes} ep", disable=not progress)
    for r, n_ep in enumerate(per_round):
        beta = 1.0 if r == 0 else beta0 ** r
        if rollouts.parallel:
            o, lab = collect_parallel(rollouts, c.env, params_file, student, bcfg.expert, n_ep, seed, r, beta, noise,
                                      next_valid=follows, expert=expert)
            bar.update(n_ep)
        else:
            o, lab = collect(env, student, bcfg.expert, n_ep, rng, beta, noise, bar, expert=expert, next_valid=follows)
        obs_all.append(o)
        lab_all.append(lab)
        obs_cat, lab_cat = np.concatenate(obs_all), np.concatenate(lab_all)
        torch.manual_seed(seed + r)
        net = ResidualPolicyNet(env.assembler.size, env.residual_limit, c.network.hidden, c.network.activation)
        loss = fit(net, obs_cat, lab_cat, bcfg.epochs, bcfg.lr, bcfg.batch_size, seed + r, bcfg.weight_decay,
                   smoothness_weight=bcfg.smoothness_weight, next_valid=np.concatenate(follows))
        student = net
        log.log({"round": r, "episodes": sum(per_round[:r + 1]), "samples": len(obs_cat), "beta": beta,
                 "loss": loss, "wall_s": round(time.time() - t0, 2)})
    bar.close()
    log.close()
    pf = load_params_file(params_file)
    keep = np.random.default_rng(seed).choice(len(obs_cat), size=min(256, len(obs_cat)), replace=False)
    meta = {
        "training_method": "bc", "training_config_sha256": cfg.sha256, "config_path": cfg.path,
        "seed": seed, "episodes": episodes, "plant_randomization": {k: list(v) for k, v in env.randomization.items()},
        "joint_names": list(env.joints), "observation_names": list(env.observation_names),
        "residual_limit": env.residual_limit.tolist(), "control_rate_hz": pf["control_rate_hz"],
        "base_controller": env.base.describe(), "residual_delay_steps": env.delay,
        "params_file": params_file, "network": net.describe(),
        "observation_lowpass_hz": env.observation_lowpass_hz,
        "real_observations": obs_cat[keep].tolist(),
        "observation_envelope": json.loads(training_envelope(env, obs_cat, c.envelope, seed).to_json()),
    }
    if rollouts.parallel:
        meta["episode_seeding"] = "per_episode"
    ckpt = out / "checkpoint.pt"
    save_checkpoint(ckpt, student, meta)
    summary = {"checkpoint": str(ckpt), "episodes": episodes, "samples": int(len(obs_cat)), "final_loss": loss,
               "train_seconds": round(time.time() - t0, 1), "config_sha256": cfg.sha256, "seed": seed}
    if rollouts.parallel:
        summary["rollouts"] = rollouts.describe()
    if evaluate:
        summary["evaluation"] = evaluate_student(student, c, rollouts=rollouts,
                                                 observation_names=list(env.observation_names))
    with open(out / "summary.json", "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def _bc_values(cfg: TrainConfig) -> BCTrainConfig:
    if not isinstance(cfg.values, BCTrainConfig):
        raise TypeError(f"train_bc: expected a BC training config (config/train_bc.yaml), "
                        f"found {type(cfg.values).__name__} from {cfg.path}")
    return cfg.values


def evaluate_student(net, c: BCTrainConfig, seconds: float | None = None, rollouts=None,
                     observation_names=None) -> dict:
    """Plant-direct closed-loop RMSE ratio of a torch student on the robot's evaluation plants.

    ``rollouts``: where the plants run (:class:`~.common.parallel.Rollouts`; default in this process);
    ``observation_names``: the student's (default: the training env's default layout).
    """
    from .common.parallel import net_state
    from .evaluate import compare_plants, load_reference_spec, robot_evaluation

    seconds = float(c.evaluation.seconds if seconds is None else seconds)
    plants, reference = robot_evaluation(c.params_file)
    traj = load_reference_spec(reference or c.evaluation.reference)
    results = compare_plants({"student": net_state(net)}, plants, traj, seconds, c.params_file,
                             c.env.residual_delay_steps, observation_names, rollouts=rollouts,
                             observation_lowpass_hz=c.env.observation_lowpass_hz)
    return {name: {"base_rmse": r["base"]["rmse"], "residual_rmse": r["residual"]["rmse"], "ratio": r["ratio"]}
            for name, r in results.items()}
