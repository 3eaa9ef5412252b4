"""Residual RL with SB3 SAC, and the from-scratch baseline (same algorithm, same budget).

Why SAC: the action is continuous and bounded (tanh-squashed Gaussian matches
the [-1, 1] -> +-residual_limit scaling), the env is cheap but not free (~0.1 ms a
step, 2 CPU cores), so an off-policy learner that reuses every transition from a
replay buffer is far more sample-efficient than PPO here; SAC's automatic
entropy tuning avoids hand-tuning exploration noise per joint, and its
deterministic mean action exports to a plain MLP + tanh (what the ONNX
contract needs). TD3 would also fit; SAC was more robust to the reward scale.

Residual-specific choices:

* zero-init: the mean layer of the actor has zero weights and bias, so the
  deterministic action -- and the residual -- start at exactly 0 (the closed loop
  starts as the base controller alone); the log-std layer starts at zero
  weights and a small bias (``init_log_std``, default -2: std 0.14 in unit action);
* or init-from-imitation (``rl.init_from``: an exported .onnx or a checkpoint.pt
  of the same robot): the actor's hidden layers and mean layer are the imitation
  residual's layers, and the observation statistics are that model's own, so the
  deterministic SAC action is exactly the imitation residual's unit action
  (the closed loop starts as the shipped residual); the log-std layer as above;
* critic warm-up: during ``learning_starts`` the actions come from that initial
  policy (zero residual, or the imitation residual) with its small Gaussian
  noise (not uniform random torques), and for the first ``actor_freeze_steps``
  gradient steps the actor's weights are restored after each update
  (critic-only learning), so the actor is not pulled by an untrained critic;
* anchor (``rl.anchor_weight`` w > 0, with ``init_from``): the actor loss gains
  w * mean|Q| * |pi(s) - pi_init(s)|^2 on replay states (deterministic actions, unit scale; the
  mean|Q| scaling is TD3+BC's), so the actor moves from the imitation residual only
  where the critic's advantage outweighs the distance;
* command-rate penalty (``rl.rate_weight`` w > 0): the training reward loses
  w * |delta command / residual_limit|^2 per period (CommandRatePenalty), against chatter.

The from-scratch baseline (``full_action=True``) uses vanilla SAC: default
initialisation and uniform random warm-up, the action being the whole torque.

Observations are normalised by fixed statistics measured on base-controller
rollouts before training (the same statistics the exported graph uses).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping

import gymnasium as gym
import numpy as np

from residual_control.core.envelope import DEFAULT_MARGIN

from .common.config import RLConfig, RLTrainConfig, TrainConfig, load_params_file, load_section
from .common.logging import CSVLogger
from .common.seeding import seed_everything


class FixedNormalize(gym.ObservationWrapper):
    """clip((obs - mean) / std, -clip, clip) with fixed statistics (mirrors nets.Normalizer)."""

    def __init__(self, env, mean: np.ndarray, std: np.ndarray, clip: float = 10.0) -> None:
        super().__init__(env)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.clip = float(clip)
        self.observation_space = gym.spaces.Box(-clip, clip, env.observation_space.shape, np.float32)

    def observation(self, obs):
        return np.clip((obs - self.mean) / self.std, -self.clip, self.clip).astype(np.float32)


class CommandRatePenalty(gym.Wrapper):
    """Reward - w * sum_j ((c_j[k] - c_j[k-1]) / residual_limit_j)^2 on the command the env sends (residual only).

    The command's per-period change is what command roughness (core/roughness.py rms_step) measures; the
    first step of an episode has no previous command and no penalty.
    """

    def __init__(self, env, weight: float) -> None:
        super().__init__(env)
        self.weight = float(weight)
        self.scale = np.asarray(env.unwrapped.residual_limit, float)
        self._last = None

    def reset(self, **kwargs):
        self._last = None
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        command = np.asarray(info["command"], float)
        if self._last is not None:
            penalty = self.weight * float(np.sum(((command - self._last) / self.scale) ** 2))
            reward -= penalty
            info = {**info, "rate_cost": penalty}
        self._last = command
        return obs, float(reward), term, trunc, info


def observation_stats(env, episodes: int, rng: np.random.Generator, min_std: float = 1e-3):
    """Mean/std of the observation under the zero-residual (base alone) policy."""
    obs_all = []
    for _ in range(episodes):
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        done = False
        while not done:
            obs_all.append(obs)
            obs, _r, term, trunc, _ = env.step(np.zeros(env.action_space.shape))
            done = term or trunc
    data = np.asarray(obs_all, np.float64)
    return data.mean(0).astype(np.float32), np.maximum(data.std(0), min_std).astype(np.float32), data


def make_sac(env, rl: RLConfig | Mapping, seed: int, residual: bool, net_hidden, tensorboard=None, init_net=None):
    """SB3 SAC for ``env`` from the ``rl`` section (a mapping: missing keys take RLConfig's defaults).

    ``init_net`` (residual only): a ResidualPolicyNet whose body the actor copies (see init_actor_from);
    ``env`` must then normalise with that net's statistics (FixedNormalize(net.normalizer...)).
    """
    import torch
    from stable_baselines3 import SAC

    class ResidualSAC(SAC):
        """SAC with a zero-residual warm-up policy and an optional actor freeze."""

        warmup_from_policy = False
        actor_freeze_steps = 0

        def _sample_action(self, learning_starts, action_noise=None, n_envs=1):
            if self.warmup_from_policy and self.num_timesteps < learning_starts:
                return super()._sample_action(0, action_noise, n_envs)
            return super()._sample_action(learning_starts, action_noise, n_envs)

        anchor_body = None
        anchor_weight = 0.0

        def train(self, gradient_steps: int, batch_size: int = 64) -> None:
            if self._n_updates < self.actor_freeze_steps:
                saved = {k: v.clone() for k, v in self.actor.state_dict().items()}
                super().train(gradient_steps, batch_size)
                self.actor.load_state_dict(saved)
            elif self.anchor_body is not None and self.anchor_weight > 0:
                # The anchor's gradient is added to the SAC actor loss's before each actor step.
                opt = self.actor.optimizer
                step = opt.step

                def anchored_step(*args, **kwargs):
                    self._anchor_backward(batch_size)
                    return step(*args, **kwargs)

                opt.step = anchored_step
                try:
                    super().train(gradient_steps, batch_size)
                finally:
                    del opt.step
            else:
                super().train(gradient_steps, batch_size)

        def _anchor_backward(self, batch_size: int) -> None:
            """Backpropagate w * mean|Q| * |pi_det(s) - pi_init(s)|^2 on a replay batch (TD3+BC's scaling)."""
            obs = self.replay_buffer.sample(batch_size).observations
            mean_actions, _log_std, _ = self.actor.get_action_dist_params(obs)
            pi = torch.tanh(mean_actions)
            with torch.no_grad():
                target = torch.tanh(self.anchor_body(obs))
                q = torch.cat(self.critic(obs, pi), dim=1).min(dim=1).values.abs().mean()
            loss = self.anchor_weight * q * ((pi - target) ** 2).sum(dim=1).mean()
            loss.backward()

    if not isinstance(rl, RLConfig):
        rl = load_section(RLConfig, rl, "rl")
    policy_kwargs = {"net_arch": {"pi": list(net_hidden), "qf": list(rl.critic_hidden)},
                     "activation_fn": torch.nn.ReLU}
    model = ResidualSAC(
        "MlpPolicy", env, learning_rate=rl.lr, buffer_size=rl.buffer_size,
        learning_starts=rl.learning_starts, batch_size=rl.batch_size,
        gamma=rl.gamma, tau=rl.tau, train_freq=rl.train_freq,
        gradient_steps=rl.gradient_steps, ent_coef=rl.ent_coef, target_entropy="auto",
        policy_kwargs=policy_kwargs, seed=seed, device="cpu", verbose=0)
    if residual:
        model.warmup_from_policy = rl.warmup_from_policy
        model.actor_freeze_steps = rl.actor_freeze_steps
        if init_net is None:
            zero_init_actor(model, rl.init_log_std)
        else:
            import copy

            init_actor_from(model, init_net, rl.init_log_std)
            model.anchor_body = copy.deepcopy(init_net.body).requires_grad_(False)
            model.anchor_weight = rl.anchor_weight
    return model


def init_actor_from(model, net, init_log_std: float) -> None:
    """Copy a ResidualPolicyNet's body into the SAC actor (latent_pi + mu); small state-independent std.

    The deterministic action is then tanh(body(normalised obs)) = ``net.unit_action(obs)`` when the env's
    FixedNormalize uses the net's normaliser statistics. The architecture must match (hidden sizes, ReLU).
    """
    import torch
    from torch import nn

    src = [m for m in net.body if isinstance(m, nn.Linear)]
    dst = [m for m in model.actor.latent_pi if isinstance(m, nn.Linear)] + [model.actor.mu]
    src_shapes = [tuple(m.weight.shape) for m in src]
    dst_shapes = [tuple(m.weight.shape) for m in dst]
    if src_shapes != dst_shapes or getattr(net, "activation", "relu") != "relu":
        raise ValueError(f"rl.init_from: expected a ReLU network of the actor's layer shapes {dst_shapes} "
                         f"(network.hidden), found {getattr(net, 'activation', '?')} layers {src_shapes}")
    with torch.no_grad():
        for s, d in zip(src, dst):
            d.weight.copy_(s.weight)
            d.bias.copy_(s.bias)
        model.actor.log_std.weight.zero_()
        model.actor.log_std.bias.fill_(init_log_std)


def load_init_residual(path: str, env):
    """Return the imitation residual (ResidualPolicyNet) at ``path``, refused unless of ``env``'s robot."""
    from .finetune import _check_contract, load_init

    net, meta = load_init(path)
    _check_contract(meta, env, path)
    return net


def normaliser_stats(net) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, std, clip) of a ResidualPolicyNet's observation normaliser."""
    return (net.normalizer.mean.detach().cpu().numpy().astype(np.float32),
            net.normalizer.std.detach().cpu().numpy().astype(np.float32), float(net.normalizer.clip))


class NetPolicy:
    """A ResidualPolicyNet as a ``predict`` policy on observations normalised by its own statistics."""

    def __init__(self, net) -> None:
        self.net = net

    def predict(self, obs, deterministic: bool = True):
        import torch

        with torch.no_grad():
            x = torch.as_tensor(np.asarray(obs, np.float32)).reshape(1, -1)
            return torch.tanh(self.net.body(x)).numpy()[0], None


def zero_init_actor(model, init_log_std: float) -> None:
    """Deterministic action exactly 0 (mean layer zeroed), small state-independent initial std."""
    import torch

    with torch.no_grad():
        model.actor.mu.weight.zero_()
        model.actor.mu.bias.zero_()
        model.actor.log_std.weight.zero_()
        model.actor.log_std.bias.fill_(init_log_std)


def actor_to_net(model, mean, std, residual_limit):
    """Copy an SB3 SAC actor (deterministic path) into a ResidualPolicyNet for export."""
    import torch
    from torch import nn

    from .common.nets import ResidualPolicyNet

    linears = [m for m in model.actor.latent_pi if isinstance(m, nn.Linear)]
    hidden = [m.out_features for m in linears]
    net = ResidualPolicyNet(len(mean), residual_limit, hidden, "relu")
    targets = [m for m in net.body if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for src, dst in zip(linears + [model.actor.mu], targets):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
        net.normalizer.mean.copy_(torch.as_tensor(mean))
        net.normalizer.std.copy_(torch.as_tensor(std))
    net.eval()
    return net


def rl_envelope(model, mean, std, stats_data, names, margin: float = DEFAULT_MARGIN):
    """Return the observation envelope of an SAC run.

    Its data: the statistics episodes (the base alone) plus every replay-buffer observation.

    The buffer holds normalised (and clipped at +-10 std) observations; they are mapped back with
    the same mean/std, so a feature clipped in training is bounded by the clip, as the network sees it.
    """
    from residual_control.core.envelope import compute_envelope

    buf = model.replay_buffer
    n = buf.buffer_size if buf.full else buf.pos
    parts = [np.asarray(stats_data, np.float64).reshape(-1, len(names))]
    if n:
        normed = np.asarray(buf.observations[:n], np.float64).reshape(-1, len(names))
        parts.append(normed * np.asarray(std, np.float64) + np.asarray(mean, np.float64))
    return compute_envelope(np.concatenate(parts), names, margin)


class EvalRecorder:
    """Deterministic evaluation on fixed episodes (same seeds for every run)."""

    def __init__(self, env, episodes: int, seed: int) -> None:
        self.env = env
        self.seeds = [seed * 1000 + 17 * i + 1 for i in range(episodes)]

    def __call__(self, model) -> dict:
        from residual_control.core.roughness import rms_step

        ret, track, rmse, rough = [], [], [], []
        for s in self.seeds:
            obs, _ = self.env.reset(seed=s)
            done, R, T, e2, n = False, 0.0, 0.0, 0.0, 0
            commands = []
            while not done:
                act = np.zeros(self.env.action_space.shape) if model is None else model.predict(
                    obs, deterministic=True)[0]
                obs, r, term, trunc, info = self.env.step(act)
                R += r
                T -= info["tracking_cost"]
                e2 += float(np.sum(info["error"] ** 2))
                commands.append(np.asarray(info["command"], float))
                n += 1
                done = term or trunc
            ret.append(R)
            track.append(T)
            rmse.append(np.sqrt(e2 / (len(info["error"]) * n)))
            rough.append(rms_step(np.asarray(commands)))
        per_joint = [float(np.mean([r[j] for r in rough if r[j] is not None])) for j in range(len(rough[0]))]
        return {"return": float(np.mean(ret)), "tracking_return": float(np.mean(track)),
                "rmse": float(np.mean(rmse)), "rms_step_max": max(per_joint), "rms_step": per_joint}


def rl_env(env_cfg, params_file: str, seed: int, full_action: bool, mean, std, clip: float,
           rate_weight: float = 0.0):
    """Return one training env of :func:`train_rl` (a module-level function: worker processes and Ray build it)."""
    from .env import make_env_from_config

    env = FixedNormalize(make_env_from_config(env_cfg, params_file, seed=seed, full_action=full_action), mean, std,
                         clip)
    if rate_weight > 0 and not full_action:
        env = CommandRatePenalty(env, rate_weight)
    return env


def train_rl(cfg: TrainConfig, out_dir: str, seed: int | None = None, full_action: bool = False,
             total_steps: int | None = None, progress: bool = True, curve: bool = True, workers: int = 1,
             ray_address: str | None = None) -> dict:
    """Train SAC (residual, or full_action baseline). Writes checkpoint.pt (residual only), curve.csv.

    ``workers`` > 1 or ``ray_address``: SAC steps ``workers`` environments at once, in spawned processes
    (SubprocVecEnv) or Ray actors (:func:`~.common.parallel.make_vec_env`), seeded seed, seed + 1, ...; with
    ``gradient_steps`` times ``workers`` gradient steps per step of them, so every transition is learned
    from as often as with one environment. The same seed and number of environments give the same run
    locally and on Ray; another number of environments is another run (``total_steps`` counts transitions).
    """
    from .common.parallel import Rollouts

    with Rollouts(workers, ray_address) as rollouts:
        return _train_rl(cfg, out_dir, seed, full_action, total_steps, progress, curve, rollouts)


def _train_rl(cfg: TrainConfig, out_dir: str, seed: int | None, full_action: bool, total_steps: int | None,
              progress: bool, curve: bool, rollouts) -> dict:
    from tqdm import tqdm

    from .common.nets import save_checkpoint
    from .env import make_env_from_config

    c = cfg.values
    if not isinstance(c, RLTrainConfig):
        raise TypeError(f"train_rl: expected an RL training config (config/train_rl.yaml), "
                        f"found {type(c).__name__} from {cfg.path}")
    seed = int(c.seed if seed is None else seed)
    rl = c.rl
    total = int(rl.total_steps if total_steps is None else total_steps)
    rng = seed_everything(seed, threads=c.torch_threads)
    params_file = c.params_file
    env_cfg = c.env
    if rl.init_from and not full_action:  # observe as the imitation residual does (its qdd_ref and low-pass)
        from .finetune import env_config_for_model, load_init

        env_cfg = env_config_for_model(env_cfg, load_init(rl.init_from)[1])
    stats_env = make_env_from_config(env_cfg, params_file, seed=seed + 1)
    mean, std, data = observation_stats(stats_env, rl.stats_episodes, rng)
    clip = 10.0
    init_net = None
    if rl.init_from and not full_action:
        # The imitation residual's own statistics, so that the initial actor is that residual exactly.
        init_net = load_init_residual(rl.init_from, stats_env)
        mean, std, clip = normaliser_stats(init_net)
    if rollouts.parallel:
        import dataclasses
        from functools import partial

        from .common.parallel import make_vec_env

        n_envs = rollouts.workers
        env = make_vec_env([partial(rl_env, env_cfg, params_file, seed, full_action, mean, std, clip, rl.rate_weight)
                            for _ in range(n_envs)], rollouts)
        rl = dataclasses.replace(rl, gradient_steps=rl.gradient_steps * n_envs)
    else:
        env = rl_env(env_cfg, params_file, seed, full_action, mean, std, clip, rl.rate_weight)
    eval_env = FixedNormalize(make_env_from_config(env_cfg, params_file, seed=seed + 2, full_action=full_action),
                              mean, std, clip)
    model = make_sac(env, rl, seed, residual=not full_action, net_hidden=c.network.hidden, init_net=init_net)
    recorder = EvalRecorder(eval_env, rl.eval_episodes, seed)
    eval_every = rl.eval_every
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = CSVLogger(out / "curve.csv")
    rows = []
    t0 = time.time()
    label = "scratch" if full_action else "residual"

    def record(step):
        r = recorder(model)
        r.update(step=step, wall_s=round(time.time() - t0, 1))
        rows.append(r)
        log.log(r)

    if curve:
        record(0)
    bar = tqdm(total=total, desc=f"sac {label}", disable=not progress)
    done_steps = 0
    while done_steps < total:
        chunk = min(eval_every, total - done_steps)
        model.learn(chunk, reset_num_timesteps=False, progress_bar=False)
        done_steps += chunk
        bar.update(chunk)
        if curve or done_steps >= total:
            record(done_steps)
    bar.close()
    log.close()
    if rollouts.parallel:
        env.close()
    summary = {"method": f"rl_{label}", "total_steps": total, "seed": seed, "curve": rows,
               "init_from": rl.init_from if init_net is not None else None,
               "train_seconds": round(time.time() - t0, 1), "config_sha256": cfg.sha256}
    if rollouts.parallel:
        summary["rollouts"] = {**rollouts.describe(), "n_envs": rollouts.workers, "gradient_steps": rl.gradient_steps}
    if not full_action:
        inner = eval_env.unwrapped if rollouts.parallel else env.unwrapped
        net = actor_to_net(model, mean, std, inner.residual_limit)
        net.normalizer.clip = clip
        pf = load_params_file(params_file)
        keep = np.random.default_rng(seed).choice(len(data), size=min(256, len(data)), replace=False)
        meta = {
            "training_method": "rl", "training_config_sha256": cfg.sha256, "config_path": cfg.path,
            "seed": seed, "total_steps": total,
            "plant_randomization": {k: list(v) for k, v in inner.randomization.items()},
            "joint_names": list(inner.joints), "observation_names": list(inner.observation_names),
            "observation_lowpass_hz": inner.observation_lowpass_hz,
            "residual_limit": inner.residual_limit.tolist(), "control_rate_hz": pf["control_rate_hz"],
            "base_controller": inner.base.describe(), "residual_delay_steps": inner.delay,
            "params_file": params_file, "network": net.describe(),
            "real_observations": data[keep].astype(np.float32).tolist(),
            "observation_envelope": json.loads(rl_envelope(
                model, mean, std, data, inner.observation_names).to_json()),
        }
        save_checkpoint(out / "checkpoint.pt", net, meta)
        summary["checkpoint"] = str(out / "checkpoint.pt")
    with open(out / "summary.json", "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    return summary
