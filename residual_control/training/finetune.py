"""Fine-tune a residual from a robot's own closed-loop logs: identify the plant, continue DAgger in it.

``residual-control train finetune --bags DIR... --init MODEL [--robot DIR] --out RUN``:

1. read the episodes (rosbag2 bags through :func:`residual_control.logs.bag.read_episodes`, or ``.npz``
   episodes of :func:`residual_control.training.sim_logs.save_episode`);
2. identify the plant from them (:func:`residual_control.training.identify.identify`: the six
   randomization parameters and the effects the simulator leaves out that the logs show, each with a
   standard error; refused when the logs do not determine them);
3. continue DAgger (training/bc.py) from the initial residual (``--init``: an ONNX model of the
   package or its checkpoint.pt; its weights and observation normaliser are kept and trained further)
   in the IDENTIFIED simulator: every episode draws the plant from a narrow randomization around the
   identified values (+- ``k_sigma`` standard errors, at least ``rel_floor`` of each value; the fitted
   effects fixed at their values), the privileged expert (bc.expert_residual, with the effects) labels
   every visited state, round r rolls the expert out in a share ``beta0**(r+1)`` of its episodes and the
   current student in the rest (round 0 starts from the initial residual itself);
4. where an episode carries an expert's commands (``Episode.expert``), its states are imitated directly:
   label = (expert - a_base) of the period the residual is mixed into, in units of the bound.

The checkpoint's metadata records the method, the initial model's SHA-256, the identification (values,
standard errors, fit) and every bag's SHA-256 (``export`` writes them into the ONNX metadata).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from residual_control.logs.episode import Episode

from residual_control.core.errors import ConfigError, ModelError
from residual_control.core.observation import LOWPASS_METADATA_KEY, ObservationLowpass

from .common.config import BCTrainConfig, TrainConfig, _at_least, load_params_file, load_train_config

METHOD = "finetune: plant identified from the logs (identify.py), DAgger continued in the identified simulator"
DEFAULT_CONFIG = "config/train_finetune.yaml"


@dataclass(frozen=True)
class IdentifyConfig:
    """``identify``: the identification of the plant from the logs (training/identify.py)."""

    smooth: int = 20                   # periods of the moving average on both sides of the torque balance
    max_latency_steps: int = 10        # latency grid: 0 .. this many physics steps
    v_min: float = 0.05                # rad/s: slower periods are left out (static friction)
    bootstrap: int = 100               # block-bootstrap resamples for the standard errors
    block: int = 50                    # periods per bootstrap block
    instruments: bool = False          # instrumental variables against closed-loop sensor noise
    effects: bool = True               # fit the effects the simulator leaves out (forward selection)
    links: tuple[str, ...] = ()        # links whose link_mass_scale to fit
    k_sigma: float = 2.0               # randomization: +- k_sigma standard errors ...
    rel_floor: float = 0.05            # ... and at least this share of each value

    def __post_init__(self) -> None:
        _at_least(self, smooth=1, max_latency_steps=0, v_min=0.0, bootstrap=2, block=1, k_sigma=0.0,
                  rel_floor=0.0)


@dataclass(frozen=True)
class FinetuneConfig:
    """``finetune``: how the logs enter the training."""

    expert_weight: float = 1.0         # weight of a logged expert's labels relative to the simulated ones
    refit_normalizer: bool = False     # keep the initial model's observation normaliser (False)


@dataclass(frozen=True)
class FinetuneTrainConfig(BCTrainConfig):
    """config/train_finetune.yaml: ``residual-control train finetune``."""

    identify: IdentifyConfig = field(default_factory=IdentifyConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


def load_finetune_config(path: str | None = None, overrides=None) -> TrainConfig:
    return load_train_config(path or DEFAULT_CONFIG, overrides, schema=FinetuneTrainConfig)


# ------------------------------------------------------------------------------------------- inputs
def episode_sha256(ep: Episode) -> str:
    """SHA-256 of an episode's arrays (for episodes that come from no file)."""
    h = hashlib.sha256()
    for name in ("t", "q", "qd", "q_ref", "qd_ref", "command", "a_base", "applied_residual"):
        h.update(np.ascontiguousarray(getattr(ep, name), dtype=np.float64).tobytes())
    return h.hexdigest()


def source_sha256(path: str | Path) -> dict:
    """{file name: sha256} of a bag folder's storage files, or of one file (an .npz episode, a bag file)."""
    p = Path(path)
    if p.suffix == ".npz":
        from residual_control.logs.bag import file_sha256

        return {p.name: file_sha256(p)}
    from residual_control.logs.bag import bag_sha256

    return bag_sha256(p)


def read_logs(paths: Sequence[str | Path], params_file: str | None = None) -> tuple[list[Episode], list[dict]]:
    """Return the episodes and their sources ({path, sha256}) of bags, folders of bags or .npz episodes.

    ``params_file``: the params file the fine-tuned model is for: a bag of other joints, or one recorded
    with other parameters (its metadata holds them), is refused (logs.bag.read_episode).
    """
    from .common.config import resolve_path
    from .sim_logs import load_episode

    joints, params_text = None, None
    if params_file:
        joints = load_params_file(params_file)["joints"]
        params_text = resolve_path(params_file).read_text(encoding="utf-8")
    episodes, sources = [], []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"--bags {raw}: expected a rosbag2 folder, a folder of bags or an .npz "
                                    f"episode, found nothing there")
        if p.suffix == ".npz":
            found = [p]
        elif p.is_dir() and not (p / "metadata.yaml").exists():
            found = sorted(d for d in p.iterdir() if (d / "metadata.yaml").exists() or d.suffix == ".npz")
            if not found:
                raise FileNotFoundError(f"--bags {raw}: expected bags (folders with metadata.yaml) or .npz "
                                        f"episodes inside, found {sorted(x.name for x in p.iterdir())}")
        else:
            found = [p]
        for f in found:
            if f.suffix == ".npz":
                ep = load_episode(f)
            else:
                from residual_control.logs.bag import read_episode

                ep = read_episode(f, joints=joints, params_text=params_text)
            episodes.append(ep)
            sources.append({"path": str(f), "sha256": source_sha256(f)})
    return episodes, sources


def load_init(model: str | Path):
    """Return (ResidualPolicyNet, meta) of an ONNX model of the package or a checkpoint.pt.

    ONNX: the graph of training/common/onnx_export.py (obs_mean, obs_std, obs clip, Gemm W/b with
    the activation between, residual_limit); the metadata gives the contract. Anything else is
    refused naming what was expected.
    """
    from .common.nets import ResidualPolicyNet, load_checkpoint

    path = Path(model)
    if path.suffix in (".pt", ".pth"):
        net, meta = load_checkpoint(path)
        if not isinstance(net, ResidualPolicyNet):
            raise ModelError(f"{model}: expected one network to start from, found an ensemble of "
                             f"{len(net.members)} students (bc.students); start from one of its students' "
                             f"checkpoints (student_<k>/checkpoint.pt)")
        return net, meta
    import onnx
    import torch
    from onnx import numpy_helper

    from residual_control.core.policy import ModelContract, sha256_of

    m = onnx.load(str(path))
    inits = {i.name: np.array(numpy_helper.to_array(i)) for i in m.graph.initializer}
    need = ["obs_mean", "obs_std", "obs_clip_hi", "residual_limit"]
    missing = [k for k in need if k not in inits]
    if missing:
        raise ValueError(f"--init {path}: expected a model written by the package's export (initializers "
                         f"{need}, W1, b1, ...), missing {missing}")
    acts = {"Relu": "relu", "Tanh": "tanh", "Elu": "elu"}
    ops = [n.op_type for n in m.graph.node]
    gemm = [i for i, op in enumerate(ops) if op == "Gemm"]
    hidden_acts = {ops[i + 1] for i in gemm[:-1]}
    if len(hidden_acts) != 1 or next(iter(hidden_acts)) not in acts:
        raise ValueError(f"--init {path}: expected one activation ({list(acts)}) after each hidden layer, "
                         f"found {sorted(hidden_acts)}")
    weights = [inits[f"W{k}"] for k in range(1, 2 * len(gemm) + 1, 2) if f"W{k}" in inits]
    biases = [inits[f"b{k}"] for k in range(1, 2 * len(gemm) + 1, 2) if f"b{k}" in inits]
    if len(weights) != len(gemm):
        raise ValueError(f"--init {path}: expected {len(gemm)} weight matrices W1, W3, ..., found {len(weights)}")
    meta_props = {p.key: p.value for p in m.metadata_props}
    contract = ModelContract.from_metadata(meta_props, str(path))
    limit = inits["residual_limit"].reshape(-1)
    n_obs = weights[0].shape[1]
    net = ResidualPolicyNet(n_obs, limit.tolist(), [w.shape[0] for w in weights[:-1]],
                            acts[next(iter(hidden_acts))])
    with torch.no_grad():
        net.normalizer.mean.copy_(torch.as_tensor(inits["obs_mean"].reshape(-1)))
        net.normalizer.std.copy_(torch.as_tensor(inits["obs_std"].reshape(-1)))
        net.normalizer.clip = float(inits["obs_clip_hi"])
        linears = [layer for layer in net.body if isinstance(layer, torch.nn.Linear)]
        for layer, w, b in zip(linears, weights, biases):
            layer.weight.copy_(torch.as_tensor(w))
            layer.bias.copy_(torch.as_tensor(b))
    net.eval()
    meta = {"joint_names": list(contract.joint_names), "observation_names": list(contract.observation_names),
            "residual_limit": list(contract.residual_limit), "control_rate_hz": contract.control_rate_hz,
            "base_controller": dict(contract.base_controller), "sha256": sha256_of(str(path)),
            "extra": dict(contract.extra)}
    return net, meta


def sample_plant(rng: np.random.Generator, ranges: dict, fixed) -> object:
    """Draw a plant from the narrow ranges, with the identified effects of ``fixed`` kept."""
    from residual_control.sim.plant import PlantParams

    p = PlantParams.sample(rng, ranges)
    effects = {name: dict(getattr(fixed, name)) for name in getattr(PlantParams, "effect_names", lambda: ())()
               if getattr(fixed, name, None)}
    return p.replace(**effects) if effects else p


def collect(env, student, expert_cfg, episodes: int, rng, beta: float, noise_std: float, ranges, fixed,
            next_valid: list | None = None):
    """bc.collect on plants drawn around the identified one, its effects included (bc.expert_residual labels)."""
    from . import bc

    return bc.collect(env, student, expert_cfg, episodes, rng, beta, noise_std, plant=plant_sampler(ranges, fixed),
                      next_valid=next_valid)


def plant_sampler(ranges: dict, fixed):
    """Return ``plant(rng)`` for bc's collectors: :func:`sample_plant` around ``fixed`` (picklable, for workers)."""
    from functools import partial

    return partial(sample_plant, ranges=ranges, fixed=fixed)


def episode_observations(env, ep: Episode) -> np.ndarray:
    """(K, n_obs) the runtime's observation of each logged period (NaN rows where it has none).

    Assembled from the period's state, reference, reference acceleration, base action and perception,
    then through the low-pass the model declares (env.lowpass: a fresh one per log, on the rows' stamps,
    over the periods with an observation, as the policy node saw them).
    """
    out = np.full((ep.periods, env.assembler.size), np.nan, np.float32)
    if env.perception_features and ep.perception is None:
        return out  # a recording without the perception topic: its states cannot be observed as the policy does
    ok = ep.complete() & np.all(np.isfinite(ep.a_base), axis=1)
    qdd_ref = ep.reference_acceleration()
    lowpass = (ObservationLowpass(env.lowpass.cutoff_hz, env.lowpass.period) if getattr(env, "lowpass", None)
               is not None else None)
    for k in np.flatnonzero(ok):
        per = ep.perception[k] if ep.perception is not None and env.perception_features else None
        if per is not None and not np.all(np.isfinite(per)):
            continue
        if not np.all(np.isfinite(qdd_ref[k])) and env.assembler.uses_reference_acceleration:
            continue
        x = env.assembler.assemble(ep.q[k], ep.qd[k], ep.q_ref[k], ep.qd_ref[k], ep.a_base[k], per,
                                   np.nan_to_num(qdd_ref[k]))
        out[k] = lowpass.update(x, float(ep.t[k])) if lowpass is not None else x
    return out


def logged_observations(env, episodes: Sequence[Episode]) -> np.ndarray:
    """Return the runtime's observations of the logged states (for the envelope)."""
    rows = [o[np.all(np.isfinite(o), axis=1)] for o in (episode_observations(env, ep) for ep in episodes)]
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, env.assembler.size), np.float32)


def logged_expert(env, episodes: Sequence[Episode], next_valid: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (observations, labels) of the periods with an expert's command.

    label = (expert - a_base) / bound of the period the residual is mixed into
    (``residual_delay_steps`` later), clipped to [-1, 1].
    ``next_valid``: a list to which a bool array is appended, True where the next sample is the next period
    of the same log (the pairs of the smoothness term, bc.fit).
    """
    obs, lab, rows_of = [], [], []
    d = env.delay
    for i, ep in enumerate(episodes):
        if ep.expert is None or (env.perception_features and ep.perception is None):
            continue
        observed = episode_observations(env, ep)
        for k in range(ep.periods - d):
            if not (np.all(np.isfinite(observed[k])) and np.all(np.isfinite(ep.expert[k + d]))
                    and np.all(np.isfinite(ep.a_base[k + d]))):
                continue
            obs.append(observed[k])
            lab.append(np.clip((ep.expert[k + d] - ep.a_base[k + d]) / env.residual_limit, -1, 1))
            rows_of.append((i, k))
    if next_valid is not None:
        next_valid.append(np.array([a[0] == b[0] and b[1] == a[1] + 1 for a, b in zip(rows_of, rows_of[1:])]
                                   + [False] * bool(rows_of), bool))
    n = env.assembler.size
    return np.asarray(obs, np.float32).reshape(-1, n), np.asarray(lab, np.float32).reshape(-1, env.n)


def fit_from(net, obs, labels, weights, epochs: int, lr: float, batch: int, seed: int, weight_decay: float,
             refit_normalizer: bool, smoothness_weight=0.0, next_valid: np.ndarray | None = None) -> float:
    """Continue training ``net`` (weighted MSE on the unit action), its normaliser kept unless refit.

    ``smoothness_weight`` and ``next_valid``: the temporal smoothness term, as in bc.fit.
    """
    from .bc import fit

    return fit(net, obs, labels, epochs, lr, batch, seed, weight_decay, weights=weights,
               refit_normalizer=refit_normalizer, smoothness_weight=smoothness_weight, next_valid=next_valid)


def env_config_for_model(env_cfg, init_meta: dict):
    """Return ``env_cfg`` observing as the model of ``init_meta`` does (its reference acceleration and low-pass).

    Fine-tuning and RL from a model keep its observation: whether it reads ``qdd_ref`` and the low-pass it
    declares come from the model, not from the config (whose keys are for training from scratch).
    """
    import dataclasses

    names = list(init_meta.get("observation_names", []))
    return dataclasses.replace(env_cfg, reference_acceleration=any(n.startswith("qdd_ref/") for n in names),
                               observation_lowpass_hz=_lowpass_hz(init_meta))


def _lowpass_hz(init_meta: dict) -> float:
    """Return the low-pass (Hz) an initial model declares: its checkpoint key or ONNX metadata; 0: none."""
    return float(init_meta.get("observation_lowpass_hz") or init_meta.get("extra", {}).get(LOWPASS_METADATA_KEY)
                 or 0.0)


def _check_contract(init_meta: dict, env, init: str) -> None:
    """Refuse an initial model not of the params file's robot (joints, observation layout, residual limit)."""
    problems = []
    if list(init_meta["joint_names"]) != list(env.joints):
        problems.append(f"joints {list(env.joints)} (found {list(init_meta['joint_names'])})")
    if list(init_meta["observation_names"]) != list(env.observation_names):
        problems.append(f"observations {list(env.observation_names)} (found {list(init_meta['observation_names'])})")
    lowpass = _lowpass_hz(init_meta)
    if lowpass != env.observation_lowpass_hz:
        problems.append(f"env.observation_lowpass_hz {env.observation_lowpass_hz:g} (found {lowpass:g})")
    limit = np.asarray(init_meta["residual_limit"], dtype=float)
    if limit.shape != env.residual_limit.shape or not np.allclose(limit, env.residual_limit):
        problems.append(f"residual_limit {env.residual_limit.tolist()} (found {list(init_meta['residual_limit'])})")
    if problems:
        raise ValueError(f"--init {init}: expected a model of the params file's robot: " + "; ".join(problems))


def train_finetune(cfg: TrainConfig, episodes: Sequence[Episode], init: str, out_dir: str,
                   sources: Sequence[dict] | None = None, seed: int | None = None, progress: bool = True,
                   robot=None, rollouts=None) -> dict:
    """Identify, fine-tune, write ``out_dir/checkpoint.pt``, ``identification.json``, ``summary.json``.

    ``rollouts`` (:class:`~.common.parallel.Rollouts`, default in this process): where the DAgger episodes
    run; a parallel one gives each episode its own generator (bc.collect_parallel).
    """
    import torch
    from tqdm import tqdm

    from .common.parallel import Rollouts

    rollouts = rollouts or Rollouts()

    from .bc import training_envelope
    from .common.logging import CSVLogger
    from .common.nets import save_checkpoint
    from .common.seeding import seed_everything
    from .env import make_env_from_config
    from .identify import identify

    c = cfg.values
    if not isinstance(c, FinetuneTrainConfig):
        raise ConfigError(f"train finetune: expected a fine-tuning config (config/train_finetune.yaml), found "
                          f"{type(c).__name__} from {cfg.path}")
    seed = int(c.seed if seed is None else seed)
    rng = seed_everything(seed, threads=c.torch_threads)
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    student, init_meta = load_init(init)
    env_cfg = env_config_for_model(c.env, init_meta)
    env = make_env_from_config(env_cfg, c.params_file, seed=seed)
    ic = c.identify
    ident = identify(list(episodes), robot if robot is not None else env.robot, smooth=ic.smooth,
                     max_latency_steps=ic.max_latency_steps, v_min=ic.v_min, bootstrap=ic.bootstrap,
                     block=ic.block, instruments=ic.instruments, effects=ic.effects, links=ic.links or None,
                     seed=seed)
    (out / "identification.json").write_text(ident.to_json())
    ranges = ident.randomization(ic.k_sigma, ic.rel_floor)
    env.randomization = ranges
    t_ident = time.time() - t0
    _check_contract(init_meta, env, init)
    bcfg = c.bc
    rounds = max(1, min(bcfg.dagger_rounds, bcfg.episodes))
    per_round = [bcfg.episodes // rounds + (1 if r < bcfg.episodes % rounds else 0) for r in range(rounds)]
    follows: list = []  # the smoothness term's pairs (bc.smoothness_weight), one array per part
    ex_obs, ex_lab = logged_expert(env, episodes, next_valid=follows)
    obs_all, lab_all, w_all = [], [], []
    if len(ex_obs):
        obs_all.append(ex_obs)
        lab_all.append(ex_lab)
        w_all.append(np.full(len(ex_obs), c.finetune.expert_weight, np.float32))
    log = CSVLogger(out / "train_log.csv")
    bar = tqdm(total=bcfg.episodes, desc=f"finetune {bcfg.episodes} ep", disable=not progress)
    loss = float("nan")
    for r, n_ep in enumerate(per_round):
        beta = bcfg.beta0 ** (r + 1)
        if rollouts.parallel:
            from .bc import collect_parallel

            o, lab = collect_parallel(rollouts, env_cfg, c.params_file, student, bcfg.expert, n_ep, seed, r, beta,
                                      bcfg.noise_std, plant=plant_sampler(ranges, ident.params), next_valid=follows)
        else:
            o, lab = collect(env, student, bcfg.expert, n_ep, rng, beta, bcfg.noise_std, ranges, ident.params,
                             next_valid=follows)
        bar.update(n_ep)
        obs_all.append(o)
        lab_all.append(lab)
        w_all.append(np.ones(len(o), np.float32))
        obs_cat, lab_cat, w_cat = np.concatenate(obs_all), np.concatenate(lab_all), np.concatenate(w_all)
        torch.manual_seed(seed + r)
        loss = fit_from(student, obs_cat, lab_cat, w_cat, bcfg.epochs, bcfg.lr, bcfg.batch_size, seed + r,
                        bcfg.weight_decay, c.finetune.refit_normalizer and r == 0,
                        smoothness_weight=bcfg.smoothness_weight, next_valid=np.concatenate(follows))
        log.log({"round": r, "episodes": sum(per_round[:r + 1]), "samples": len(obs_cat), "beta": beta,
                 "loss": loss, "wall_s": round(time.time() - t0, 2)})
    bar.close()
    log.close()
    pf = load_params_file(c.params_file)
    # The envelope: the fine-tuning data, base-alone runs in the identified simulator, and the logged states.
    logged = logged_observations(env, episodes)
    env_data = np.concatenate([obs_cat, logged]) if len(logged) else obs_cat
    keep = np.random.default_rng(seed).choice(len(obs_cat), size=min(256, len(obs_cat)), replace=False)
    sources = list(sources) if sources is not None else [
        {"path": str(ep.metadata.get("source", "episode")), "sha256": {"episode": episode_sha256(ep)}}
        for ep in episodes]
    meta = {
        "training_method": "finetune", "training_config_sha256": cfg.sha256, "config_path": cfg.path,
        "seed": seed, "episodes": bcfg.episodes, "plant_randomization": {k: list(v) for k, v in ranges.items()},
        "joint_names": list(env.joints), "observation_names": list(env.observation_names),
        "observation_lowpass_hz": env.observation_lowpass_hz,
        "residual_limit": env.residual_limit.tolist(), "control_rate_hz": pf["control_rate_hz"],
        "base_controller": env.base.describe(), "residual_delay_steps": env.delay,
        "params_file": c.params_file, "network": student.describe(),
        "real_observations": obs_cat[keep].tolist(),
        "observation_envelope": json.loads(training_envelope(env, env_data, c.envelope, seed).to_json()),
        "bags": sources,
        "finetune": {"method": METHOD, "init_model": str(init), "init_sha256": init_meta.get("sha256", ""),
                     "identified_plant": _plain(ident.params.as_dict()), "std_error": ident.std_error,
                     "r2": ident.r2, "residual_rms": ident.residual_rms, "log_seconds": ident.seconds,
                     "log_episodes": ident.episodes, "expert_periods": int(len(ex_obs))},
    }
    if rollouts.parallel:
        meta["episode_seeding"] = "per_episode"
    ckpt = out / "checkpoint.pt"
    save_checkpoint(ckpt, student, meta)
    summary = {"checkpoint": str(ckpt), "identification": ident.to_dict(), "randomization": ranges,
               "samples": int(len(obs_cat)), "expert_periods": int(len(ex_obs)), "final_loss": loss,
               "identify_seconds": round(t_ident, 1), "train_seconds": round(time.time() - t0, 1),
               "config_sha256": cfg.sha256, "seed": seed, "bags": sources}
    with open(out / "summary.json", "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2, default=_plain)
    return summary


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if hasattr(x, "items"):
        return {k: _plain(v) for k, v in x.items()}
    return x


def finetune(bags: Sequence[str], init: str, out_dir: str, config: str | None = None, robot: str | None = None,
             seed: int | None = None, episodes: int | None = None, progress: bool = True, workers: int = 1,
             ray_address: str | None = None) -> dict:
    """``train finetune``: read the logs, identify, fine-tune (see the module docstring)."""
    from .cli import robot_params_file
    from .common.parallel import Rollouts

    params = robot_params_file(robot)
    overrides: dict = {}
    if params:
        overrides["params_file"] = params
    if episodes is not None:
        overrides["bc"] = {"episodes": int(episodes)}
    cfg = load_finetune_config(config, overrides or None)
    eps, sources = read_logs(bags, cfg.values.params_file)
    with Rollouts(workers, ray_address) as rollouts:
        return train_finetune(cfg, eps, init, out_dir, sources, seed, progress, rollouts=rollouts)


__all__ = ["FinetuneTrainConfig", "IdentifyConfig", "FinetuneConfig", "load_init", "train_finetune", "finetune",
           "read_logs", "METHOD"]
