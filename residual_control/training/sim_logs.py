"""Simulated closed-loop logs: :class:`~residual_control.logs.episode.Episode` s from the training env.

What a recording of the node graph gives, without ROS: the base controller plus a residual (an ONNX
model through the runtime's policy step, :class:`~residual_control.training.evaluate.RuntimePolicy`,
or none) on a fixed plant, one row per control period: the measured (noisy) joint state, the
reference in force, the base action, the residual computed from that state, the command the mixer
sent for the period and what it added. Used by the tests and the fine-tuning measurements in place of
bags of a real robot; ``expert=True`` also logs the privileged expert's command (a_base + the expert
residual of :mod:`.bc`), as a teleoperation or optimised-controller topic would.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from residual_control.logs.episode import Episode

from .evaluate import DEFAULT_PARAMS_FILE, RuntimePolicy, load_plant


def simulate_episode(plant, model: str | None = None, seconds: float = 10.0, seed: int = 0,
                     params_file: str = DEFAULT_PARAMS_FILE, trajectory: Mapping[str, Any] | None = None,
                     expert: bool = False, residual_delay_steps: int = 1) -> Episode:
    """One closed-loop run on ``plant`` (PlantParams, mapping or plant YAML) as an Episode.

    ``model``: ONNX residual (None: the base controller alone). ``trajectory``: a reference spec
    (default: one drawn from the robot's training references with ``seed``, a different task per
    episode). The episode ends early if the arm leaves its position limits (as the env does).
    """
    from .env import ResidualEnv, sample_trajectory_spec

    params = load_plant(plant)
    env = ResidualEnv(params_file, plant=params, episode_seconds=seconds, seed=seed,
                      residual_delay_steps=residual_delay_steps, start_at_rest=True)
    rng = np.random.default_rng([seed, 7])
    spec = dict(trajectory) if trajectory else sample_trajectory_spec(rng, env.trajectory_cfg, env.n)
    env.reset(seed=seed, options={"trajectory": spec})
    policy = RuntimePolicy(model, params_file) if model else None
    rows: dict[str, list] = {k: [] for k in ("t", "q", "qd", "q_ref", "qd_ref", "command", "a_base",
                                             "applied_residual", "residual", "perception", "expert")}
    done = False
    if expert:
        from .bc import expert_residual
    while not done:
        da = policy(env) if policy is not None else np.zeros(env.n)
        rows["t"].append(env.time)
        rows["q"].append(env.q_meas.copy())
        rows["qd"].append(env.qd_meas.copy())
        rows["q_ref"].append(np.asarray(env.q_ref, dtype=float).copy())
        rows["qd_ref"].append(np.asarray(env.qd_ref, dtype=float).copy())
        rows["a_base"].append(np.asarray(env.a_base, dtype=float).copy())
        rows["residual"].append(np.asarray(da, dtype=float).copy())
        rows["perception"].append(np.asarray(env.perception, dtype=float).copy())
        if expert:
            rows["expert"].append(env.a_base + expert_residual(env))
        _obs, _r, term, trunc, info = env.step(np.asarray(da, dtype=float) / env.residual_limit)
        rows["command"].append(np.asarray(info["command"], dtype=float).copy())
        rows["applied_residual"].append(np.asarray(info["applied_residual"], dtype=float).copy())
        done = term or trunc
    arr = {k: np.asarray(v, dtype=float) for k, v in rows.items() if v}
    meta = {"robot": env.robot.name, "source": "simulation", "plant": params.as_dict(), "seed": seed,
            "model": str(model) if model else None, "trajectory": spec, "params_file": params_file,
            "control_rate_hz": 1.0 / env.dt}
    if policy is not None:
        meta["model_sha256"] = policy.runner.sha256
    return Episode(joints=tuple(env.joints), t=arr["t"], q=arr["q"], qd=arr["qd"], q_ref=arr["q_ref"],
                   qd_ref=arr["qd_ref"], command=arr["command"], a_base=arr["a_base"],
                   applied_residual=arr["applied_residual"], residual=arr["residual"],
                   perception=arr["perception"], expert=arr.get("expert"), metadata=meta)


def simulate_episodes(plant, count: int, model: str | None = None, seconds: float = 10.0, seed: int = 0,
                      params_file: str = DEFAULT_PARAMS_FILE, expert: bool = False) -> list[Episode]:
    """``count`` runs on ``plant``, each with its own reference and noise (seeds seed, seed+1, ...)."""
    return [simulate_episode(plant, model, seconds, seed + i, params_file, expert=expert) for i in range(count)]


_ARRAYS = ("t", "q", "qd", "q_ref", "qd_ref", "command", "a_base", "applied_residual", "residual", "perception",
           "expert")


def save_episode(ep: Episode, path) -> None:
    """Write an episode as .npz (its arrays, the joints and the metadata as JSON)."""
    import json

    arrays = {name: getattr(ep, name) for name in _ARRAYS if getattr(ep, name) is not None}
    np.savez(path, joints=np.asarray(ep.joints), metadata=np.asarray(json.dumps(ep.metadata, default=str)),
             **arrays)


def load_episode(path) -> Episode:
    """Read an episode written by :func:`save_episode` (errors name the file and what is missing)."""
    import json

    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: expected an episode .npz (training.sim_logs.save_episode), found an unreadable "
                         f"file ({exc})") from None
    need = ("joints", "t", "q", "qd", "q_ref", "qd_ref", "command", "a_base", "applied_residual")
    missing = [k for k in need if k not in data.files]
    if missing:
        raise ValueError(f"{path}: expected the episode arrays {list(need)}, missing {missing}")
    kw = {name: data[name] for name in _ARRAYS if name in data.files}
    meta = json.loads(str(data["metadata"])) if "metadata" in data.files else {}
    meta.setdefault("source", str(path))
    return Episode(joints=tuple(str(j) for j in data["joints"]), metadata=meta, **kw)


def save_episode_bag(ep: Episode, path, params_file: str = DEFAULT_PARAMS_FILE, storage: str = "mcap",
                     t0: float = 1.0) -> None:
    """Write an episode as a rosbag2 recording of the graph's topics (logs.topics), as the recorder would.

    Stamps are ``t0 + t`` (a zero stamp reads as unstamped); the params file's text and the robot go into
    the bag's metadata. Read back by :func:`residual_control.logs.bag.read_episode`.
    """
    from residual_control.logs import bag
    from residual_control.logs.topics import TOPICS

    from .common.config import resolve_path

    store = bag._typestore().types
    text = resolve_path(params_file).read_text(encoding="utf-8")
    meta = bag.recording_metadata(params_text=text, robot=str(ep.metadata.get("robot", "")), joints=ep.joints,
                                  model_path=str(ep.metadata.get("model") or ""))

    def stamp(t):
        sec = int(np.floor(t))
        return store["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((t - sec) * 1e9)))

    def js(t, position=(), velocity=(), effort=()):
        header = store["std_msgs/msg/Header"](stamp=stamp(t), frame_id="")
        return store["sensor_msgs/msg/JointState"](
            header=header, name=list(ep.joints), position=np.asarray(position, dtype=np.float64),
            velocity=np.asarray(velocity, dtype=np.float64), effort=np.asarray(effort, dtype=np.float64))

    def array(values):
        layout = store["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
        return store["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.asarray(values, dtype=np.float64))

    with bag.BagWriter(path, storage=storage, custom_data=meta) as w:
        for topic in TOPICS:
            w.add_topic(bag.resolve_topic(topic.name), topic.msgtype)
        for k in range(ep.periods):
            t = t0 + float(ep.t[k])
            msgs = [("reference", js(t, ep.q_ref[k], ep.qd_ref[k]), "sensor_msgs/msg/JointState")]
            if ep.perception is not None:
                msgs.append(("perception", array(ep.perception[k]), "std_msgs/msg/Float64MultiArray"))
            msgs += [("joint_states", js(t, ep.q[k], ep.qd[k]), "sensor_msgs/msg/JointState"),
                     ("base_action", js(t, effort=ep.a_base[k]), "sensor_msgs/msg/JointState")]
            if ep.residual is not None:
                msgs.append(("residual_action", js(t, effort=ep.residual[k]), "sensor_msgs/msg/JointState"))
            if ep.expert is not None:
                msgs.append(("expert_action", js(t, effort=ep.expert[k]), "sensor_msgs/msg/JointState"))
            msgs += [("commands", array(ep.command[k]), "std_msgs/msg/Float64MultiArray"),
                     ("residual_mixer/applied_residual", js(t, effort=ep.applied_residual[k]),
                      "sensor_msgs/msg/JointState")]
            ns = int(round(t * 1e9))
            for i, (rel, msg, msgtype) in enumerate(msgs):
                w.write(bag.resolve_topic(rel), ns + 1000 * i, bag.serialize(msg, msgtype))


def main(argv=None) -> int:
    """``python -m residual_control.training.sim_logs --plant P --episodes N --out DIR [--model M]``."""
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(prog="python -m residual_control.training.sim_logs",
                                 description="simulated closed-loop logs (.npz episodes) for train finetune")
    ap.add_argument("--plant", required=True, help="plant YAML (the 'real robot')")
    ap.add_argument("--episodes", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--model", default="models/residual_bc.onnx", help="residual in the loop ('' for none)")
    ap.add_argument("--params", default=DEFAULT_PARAMS_FILE)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--expert", action="store_true", help="also log the privileged expert's command")
    ap.add_argument("--bag", action="store_true", help="write rosbag2 recordings (MCAP) instead of .npz")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(a.episodes):
        ep = simulate_episode(a.plant, a.model or None, a.seconds, a.seed + i, a.params, expert=a.expert)
        name = out / (f"episode_{i:03d}" if a.bag else f"episode_{i:03d}.npz")
        if a.bag:
            save_episode_bag(ep, name, a.params)
        else:
            save_episode(ep, name)
        print(f"{name}: {ep.periods} periods")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
